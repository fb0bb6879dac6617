"""The report's settings: checked at the boundary, read back from older manifests."""

from __future__ import annotations

from typing import Any

import pytest

from misterp.config import ConfigError
from misterp.mrp.config import ReportingConfig, parse_config
from misterp.mrp.records import Manifest
from misterp.records import StatusCounts
from misterp.reporting.write import reporting_of

BASE: dict[str, Any] = {
    "input": "in",
    "output": "out",
    "demographics": ["gender"],
    "target_groups": {"women": {"gender": ["female"]}},
}


def test_the_headline_group_must_be_all_or_a_target_group() -> None:
    assert parse_config(BASE | {"reporting": {"headline_group": "women"}}).reporting.headline_group
    with pytest.raises(
        ConfigError, match=r"headline_group 'wome' .*did you mean 'women'.*all, women"
    ):
        parse_config(BASE | {"reporting": {"headline_group": "wome"}})
    with pytest.raises(ConfigError, match=r"reporting\.trend_waves"):
        parse_config(BASE | {"reporting": {"trend_waves": 0}})


def _manifest(reporting: dict[str, Any] | None) -> Manifest:
    return Manifest(
        wave="2026-11",
        input=None,
        input_hashes={},
        versions={},
        config={} if reporting is None else {"reporting": reporting},
        counts=StatusCounts.count({}, {}),
        wall_seconds=None,
        files={},
        estimates_sha256="",
        models=(),
        healthy=True,
    )


def test_reporting_settings_of_older_and_newer_manifests_are_read() -> None:
    assert reporting_of(_manifest(None)) == ReportingConfig()
    # a manifest from before the report: its settings, the report's defaults
    older = reporting_of(_manifest({"interval": 0.95, "low_base": 40, "very_low_base": 20}))
    assert (older.interval, older.trend_waves, older.headline_group) == (0.95, 12, "all")
    # a key a later version adds does not stop this one from writing the report
    assert reporting_of(_manifest({"trend_waves": 6, "future_key": 1})).trend_waves == 6
