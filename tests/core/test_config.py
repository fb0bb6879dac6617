"""Wave configuration: what is accepted, what is rejected and how it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from misterp.config import ConfigError, load_config, parse_config

MINIMAL = {
    "input": "data/{wave}",
    "output": "results",
    "demographics": ["gender", "age"],
    "target_groups": {"women": {"gender": ["f"]}},
}


def test_parse_config_accepts_the_minimal_config_with_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config.input == "data/{wave}"
    assert config.output == "results"
    assert config.demographics == ["gender", "age"]
    assert config.target_groups == {"women": {"gender": ["f"]}}
    assert config.sampler.target_accept == 0.95
    assert config.retry.max_attempts == 3
    assert config.wave is None


def test_unknown_top_level_key_is_rejected_with_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'samplr' \(did you mean 'sampler'\?\)"):
        parse_config({**MINIMAL, "samplr": {}})


def test_unknown_nested_key_is_rejected_with_did_you_mean() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'sampler\.target_acept' \(did you mean 'target_accept'\?\)",
    ):
        parse_config({**MINIMAL, "sampler": {"target_acept": 0.99}})


def test_error_message_names_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^wave\.yaml: invalid config"):
        parse_config({**MINIMAL, "samplr": {}}, source="wave.yaml")


def test_target_group_naming_an_unknown_demographic_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"target group 'women' uses 'gendr'.*did you mean"):
        parse_config({**MINIMAL, "target_groups": {"women": {"gendr": ["f"]}}})


def test_target_group_named_all_is_reserved() -> None:
    with pytest.raises(ConfigError, match="'all' is reserved"):
        parse_config({**MINIMAL, "target_groups": {"all": {"gender": ["f"]}}})


def test_empty_target_group_is_rejected() -> None:
    with pytest.raises(ConfigError, match="target group 'women' is empty"):
        parse_config({**MINIMAL, "target_groups": {"women": {}}})


def test_missing_required_key_is_rejected() -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != "output"}
    with pytest.raises(ConfigError, match="output"):
        parse_config(raw)


def test_out_of_range_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"sampler\.chains"):
        parse_config({**MINIMAL, "sampler": {"chains": 1}})


def test_resolved_substitutes_the_wave_in_input_and_output() -> None:
    config = parse_config({**MINIMAL, "output": "s3://bucket/{wave}/out", "wave": "2025-06"})
    resolved = config.resolved()
    assert resolved.input == "data/2025-06"
    assert resolved.output == "s3://bucket/2025-06/out"
    assert resolved.wave == "2025-06"


def test_resolved_prefers_the_command_line_wave_and_uris() -> None:
    config = parse_config({**MINIMAL, "wave": "2025-06"})
    resolved = config.resolved(wave="2025-07", output="elsewhere")
    assert resolved.input == "data/2025-07"
    assert resolved.output == "elsewhere"


def test_resolved_without_a_wave_for_a_templated_input_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"contains \{wave\}"):
        parse_config(MINIMAL).resolved()


def test_load_config_reads_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text(
        "input: data/{wave}\n"
        "output: results\n"
        "wave: w1\n"
        "demographics: [gender, age]\n"
        "target_groups:\n"
        "  young_women: {gender: [f], age: ['18-34']}\n"
        "sampler:\n"
        "  draws: 500\n"
    )
    config = load_config(path)
    assert config.wave == "w1"
    assert config.sampler.draws == 500
    assert config.target_groups == {"young_women": {"gender": ["f"], "age": ["18-34"]}}


def test_load_config_rejects_a_yaml_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
