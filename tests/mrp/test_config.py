"""Wave configuration: what is accepted, what is rejected and how it reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from misterp.config import ConfigError
from misterp.mrp.config import load_config, parse_config

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


def test_yes_and_no_levels_in_a_yaml_config_stay_levels_and_booleans_still_read(
    tmp_path: Path,
) -> None:
    # The README's audience, written as a user would: PyYAML's 1.1 rules read yes as True.
    path = tmp_path / "wave.yaml"
    path.write_text(
        "input: data/{wave}\n"
        "output: results\n"
        "demographics: [gender]\n"
        "profiles: [category_user]\n"
        "profile_settings: {predictor: false}\n"
        "target_groups:\n"
        "  category_users: {category_user: [yes]}\n"
        "  non_users: {category_user: [no, off]}\n"
    )
    config = load_config(path)
    assert config.target_groups["category_users"] == {"category_user": ["yes"]}
    assert config.target_groups["non_users"] == {"category_user": ["no", "off"]}
    assert config.profile_settings.predictor is False


def test_load_config_rejects_a_yaml_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)


def test_reporting_defaults_are_a_90_percent_interval_and_bases_of_50_and_30() -> None:
    reporting = parse_config(MINIMAL).reporting
    assert (reporting.interval, reporting.low_base, reporting.very_low_base) == (0.9, 50, 30)
    assert reporting.funnel is None


def test_reporting_accepts_a_95_percent_interval_and_a_funnel() -> None:
    raw = {**MINIMAL, "reporting": {"interval": 0.95, "funnel": ["aware", "consider"]}}
    reporting = parse_config(raw).reporting
    assert reporting.interval == 0.95
    assert reporting.funnel == ["aware", "consider"]


@pytest.mark.parametrize("interval", [0.5, 0.999, 95])
def test_reporting_interval_outside_its_range_is_rejected(interval: float) -> None:
    with pytest.raises(ConfigError, match=r"reporting\.interval"):
        parse_config({**MINIMAL, "reporting": {"interval": interval}})


def test_a_very_low_base_above_the_low_base_is_rejected_with_the_fix() -> None:
    with pytest.raises(ConfigError, match="lower very_low_base or raise low_base"):
        parse_config({**MINIMAL, "reporting": {"low_base": 20, "very_low_base": 30}})


def test_a_funnel_of_one_stage_or_a_repeated_stage_is_rejected() -> None:
    for funnel in (["aware"], ["aware", "aware"]):
        with pytest.raises(ConfigError, match="at least two distinct stages"):
            parse_config({**MINIMAL, "reporting": {"funnel": funnel}})


def test_unknown_reporting_key_is_rejected_with_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"'reporting\.intervl' \(did you mean 'interval'\?\)"):
        parse_config({**MINIMAL, "reporting": {"intervl": 0.95}})


def test_reporting_settings_do_not_change_the_fit_settings_hash() -> None:
    # Reporting is applied at publication: changing it must republish, never refit.
    from misterp.mrp.prepare import fit_settings_hash

    default = parse_config(MINIMAL)
    changed = parse_config(
        {
            **MINIMAL,
            "reporting": {
                "interval": 0.95,
                "low_base": 100,
                "very_low_base": 10,
                "funnel": ["aware", "consider"],
            },
        }
    )
    assert fit_settings_hash(changed) == fit_settings_hash(default)
    assert fit_settings_hash(parse_config({**MINIMAL, "sampler": {"draws": 500}})) != (
        fit_settings_hash(default)
    )


AGES = ["18-24", "25-34", "35-44", "45-54", "55+"]


def test_a_random_walk_keeps_the_declared_level_order_and_changes_the_fit_settings() -> None:
    order = ["55+", "45-54", "35-44", "25-34", "18-24"]  # any order the user states, unsorted
    config = parse_config({**MINIMAL, "model": {"priors": {"random_walk": {"age": order}}}})
    assert config.model.priors.random_walk == {"age": tuple(order)}
    from misterp.mrp.prepare import fit_settings_hash

    assert fit_settings_hash(config) != fit_settings_hash(parse_config(MINIMAL))


def test_a_random_walk_on_an_unknown_demographic_is_rejected_with_did_you_mean() -> None:
    with pytest.raises(
        ConfigError, match=r"random_walk names 'agee', which is not in demographics.*'age'\?"
    ):
        parse_config({**MINIMAL, "model": {"priors": {"random_walk": {"agee": AGES}}}})


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        (["18-34", "35+"], "has 2 level"),
        (["18-24", "25-34", "18-24"], r"repeats \['18-24'\]; list each level once"),
    ],
)
def test_a_random_walk_needs_three_distinct_levels(levels: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({**MINIMAL, "model": {"priors": {"random_walk": {"age": levels}}}})


def test_a_misspelt_random_walk_key_gets_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"'model\.priors\.random_wlak' \(did you mean"):
        parse_config({**MINIMAL, "model": {"priors": {"random_wlak": {"age": AGES}}}})


ON_S3 = MINIMAL | {"input": "s3://bucket/input/{wave}", "output": "s3://bucket/results"}
#: A value that must never appear in an error message (it could be a credential).
PLANTED = "planted-s3cr3t-0000"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bogus_opt": 1}, r"unknown option 'bogus_opt'.*s3fs accepts .*endpoint_url"),
        ({"endpoint_uri": "http://s3"}, r"'endpoint_uri' \(did you mean 'endpoint_url'\?\)"),
        ({"client_kwargs": PLANTED}, r"'client_kwargs' must be a mapping .*got a str"),
        ({"config_kwargs": 3}, r"'config_kwargs' must be a mapping .*got a int"),
        ({"s3_additional_kwargs": [PLANTED]}, r"'s3_additional_kwargs' must be a mapping"),
        (
            {"client_kwargs": {"endpoint_uri": PLANTED}},
            r"unknown option 'client_kwargs.endpoint_uri' \(did you mean 'endpoint_url'\?\)",
        ),
        ({"config_kwargs": {"conect_timeout": 1}}, r"'config_kwargs.conect_timeout'.*connect_"),
    ],
)
def test_storage_options_s3fs_would_refuse_are_a_config_error_naming_them(
    options: dict[str, object], message: str
) -> None:
    # s3fs takes any keyword and fails on first use (TypeError, AttributeError: exit 3)
    with pytest.raises(ConfigError, match=message) as raised:
        parse_config({**ON_S3, "storage_options": {"secret": PLANTED, **options}})
    assert "storage_options" in str(raised.value)
    assert PLANTED not in str(raised.value)


def test_the_documented_storage_options_are_accepted() -> None:
    options = {
        "anon": False,
        "endpoint_url": "http://127.0.0.1:9000",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-central-1"},
        "config_kwargs": {"connect_timeout": 1, "retries": {"max_attempts": 1}},
        "s3_additional_kwargs": {"ServerSideEncryption": "AES256"},
        "use_listings_cache": False,
        "skip_instance_cache": True,
        "profile": "misterp",
    }
    assert parse_config({**ON_S3, "storage_options": options}).storage_options == options


def test_storage_options_are_checked_when_an_override_puts_the_wave_on_s3() -> None:
    local = parse_config({**MINIMAL, "storage_options": {"auto_mkdir": True}})  # a local option
    assert local.resolved(wave="2026-10").storage_options == {"auto_mkdir": True}
    with pytest.raises(ConfigError, match=r"unknown option 'auto_mkdir'"):
        local.resolved(wave="2026-10", output="s3://bucket/results")
