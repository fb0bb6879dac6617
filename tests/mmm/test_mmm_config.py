"""The media-mix config: typos are refused with a suggestion, ids are checked."""

from __future__ import annotations

import pytest

from misterp.errors import ConfigError
from misterp.mmm.config import (
    AdstockKind,
    ChannelPrior,
    MMMConfig,
    SaturationKind,
    load_mmm_config,
    parse_mmm_config,
)


def test_defaults_are_the_documented_ones() -> None:
    config = parse_mmm_config({"input": "in", "output": "out"})
    assert config.adstock is AdstockKind.GEOMETRIC
    assert config.saturation is SaturationKind.LOGISTIC
    assert (config.l_max, config.yearly_seasonality, config.holdout_weeks) == (8, 2, 12)
    assert config.priors.channel is ChannelPrior.SPEND_SHARE
    assert config.drop_zero_spend_channels is False
    assert config.sampler.backend == "nutpie"


def test_unknown_top_level_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'adstok' \(did you mean 'adstock'\?\)"):
        parse_mmm_config({"input": "in", "output": "out", "adstok": "geometric"})


def test_unknown_nested_key_is_refused_with_a_suggestion() -> None:
    raw = {"input": "in", "output": "out", "sampler": {"target_acept": 0.99}}
    with pytest.raises(ConfigError, match=r"'sampler.target_acept' \(did you mean 'target_accept'"):
        parse_mmm_config(raw)


def test_unknown_choice_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"saturation.*'logistic' or 'hill'"):
        parse_mmm_config({"input": "in", "output": "out", "saturation": "tanh"})


def test_run_id_that_could_leave_the_output_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"run id '\.\./x' contains '/'"):
        parse_mmm_config({"input": "in", "output": "out", "run": "../x"})


def test_trend_cannot_be_named_as_a_control() -> None:
    with pytest.raises(ConfigError, match="set trend: true instead"):
        parse_mmm_config({"input": "in", "output": "out", "controls": ["trend"]})


def test_config_file_is_read_from_yaml(tmp_path) -> None:
    path = tmp_path / "mmm.yaml"
    path.write_text("input: in\noutput: out\nsaturation: hill\nl_max: 4\n")
    config = load_mmm_config(path)
    assert isinstance(config, MMMConfig)
    assert (config.saturation, config.l_max) == (SaturationKind.HILL, 4)


def test_storage_options_s3fs_would_refuse_are_refused_naming_them() -> None:
    raw = {"input": "s3://b/in", "output": "out", "storage_options": {"client_kwargs": "text"}}
    with pytest.raises(ConfigError, match=r"storage_options.*'client_kwargs' must be a mapping"):
        parse_mmm_config(raw)
