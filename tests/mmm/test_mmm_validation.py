"""Each input rule fires with file, column, rows and fix; all problems are reported at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from misterp.mmm.config import MMMConfig
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.validation import InputValidationError, MMMData, read_mmm_input


@pytest.fixture
def frames() -> dict[str, pd.DataFrame]:
    sim = simulate_mmm(11, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    # rows ordered market, then date: DE occupies kpi.csv lines 2-81, FR 82-161
    return {"kpi": sim.kpi, "media": sim.media, "controls": sim.controls}


def write(folder: Path, frames: dict[str, pd.DataFrame]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        out = frame.copy()
        for column in ("date", "start", "end"):
            if column in out and pd.api.types.is_datetime64_any_dtype(out[column]):
                out[column] = out[column].dt.strftime("%Y-%m-%d")
        out.to_csv(folder / f"{name}.csv", index=False)
    return str(folder)


def read(folder: str, **overrides: object) -> MMMData:
    config = MMMConfig.model_validate(
        {"input": folder, "output": "unused", "controls": ["price"], **overrides}
    )
    return read_mmm_input(config)


def problems(folder: str, **overrides: object) -> list[str]:
    with pytest.raises(InputValidationError) as caught:
        read(folder, **overrides)
    return [str(problem) for problem in caught.value.report]


def test_valid_input_reads_typed_frames(tmp_path, frames) -> None:
    data = read(write(tmp_path, frames))
    assert data.markets == ["DE", "FR"]
    assert data.channels == {"DE": ["tv", "search"], "FR": ["tv", "search"]}
    assert pd.api.types.is_datetime64_any_dtype(data.kpi["date"])
    assert data.kpi["kpi"].dtype == float
    assert set(data.input_hashes) == {"kpi.csv", "media.csv", "controls.csv"}


def test_a_header_that_repeats_a_column_is_named_as_such(tmp_path: Path, frames) -> None:
    frames["media"]["market_again"] = frames["media"]["market"]
    folder = write(tmp_path, frames)
    path = tmp_path / "media.csv"
    path.write_text(path.read_text().replace("market_again", "market", 1))

    found = problems(folder)

    assert any(
        p.startswith("media.csv, column 'market', row 1: the header repeats column 'market'")
        for p in found
    ), found
    assert not any("market.1" in p for p in found), found


def test_channels_or_markets_that_differ_only_in_case_are_refused(tmp_path: Path, frames) -> None:
    """Issue 26: 'tv' and 'TV' would be one file on a case-insensitive store."""
    media = frames["media"]
    media.loc[media["market"].eq("FR") & media["channel"].eq("tv"), "channel"] = "TV"
    media.loc[media["market"].eq("DE") & media["channel"].eq("search"), "channel"] = "Search"
    media.loc[media["market"].eq("DE") & media["channel"].eq("tv"), "channel"] = "search"
    frames["kpi"].loc[frames["kpi"]["market"].eq("FR"), "market"] = "de"

    found = [p for p in problems(write(tmp_path, frames)) if "differ only in case" in p]

    assert len(found) == 2, found
    assert any(
        p.startswith("media.csv, column 'channel'") and "'Search', 'search'" in p for p in found
    ), found
    assert any(p.startswith("kpi.csv, column 'market'") and "'DE', 'de'" in p for p in found)


def test_missing_week_is_named_with_the_gap(tmp_path, frames) -> None:
    frames["kpi"] = frames["kpi"].drop(index=10)  # DE's 11th week, 2023-03-13
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("kpi.csv, column 'date', row 12: market DE: weeks missing: 2023-03-13\n")
        and "add the missing weeks" in p
        for p in found
    ), found


def test_duplicate_week_names_both_rows(tmp_path, frames) -> None:
    frames["kpi"] = pd.concat([frames["kpi"], frames["kpi"].iloc[[3]]], ignore_index=True)
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("kpi.csv, rows 5, 162: duplicate weeks (same date and market)") for p in found
    ), found


def test_date_off_the_weekly_frequency_is_named(tmp_path, frames) -> None:
    frames["kpi"].loc[4, "date"] = frames["kpi"].loc[4, "date"] + pd.Timedelta(days=1)
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("kpi.csv, column 'date', row 6: market DE: dates not on the weekly frequency")
        and "Monday" in p
        for p in found
    ), found


def test_negative_spend_and_kpi_are_refused(tmp_path, frames) -> None:
    frames["media"].loc[7, "spend"] = -5.0
    frames["kpi"].loc[2, "kpi"] = -1.0
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("media.csv, column 'spend', row 9: spend must be a number >= 0, found '-5.0'")
        for p in found
    ), found
    assert any(
        p.startswith("kpi.csv, column 'kpi', row 4: kpi must be a number >= 0") for p in found
    )


def test_channel_without_spend_is_named_and_refused(tmp_path, frames) -> None:
    media = frames["media"]
    media.loc[(media["market"] == "FR") & (media["channel"] == "search"), "spend"] = 0.0
    found = problems(write(tmp_path, frames))
    assert any(
        "market FR: channel search has zero spend in every week" in p
        and "drop_zero_spend_channels: true" in p
        and p.startswith("media.csv, column 'spend', rows 242, 243")
        for p in found
    ), found


def test_channel_without_spend_is_dropped_when_configured(tmp_path, frames) -> None:
    media = frames["media"]
    media.loc[(media["market"] == "FR") & (media["channel"] == "search"), "spend"] = 0.0
    data = read(write(tmp_path, frames), drop_zero_spend_channels=True)
    assert data.channels == {"DE": ["tv", "search"], "FR": ["tv"]}
    assert data.dropped == {"FR": ["search"]}
    assert "market FR: channel search has no spend and was dropped" in data.notes
    assert not ((data.media["market"] == "FR") & (data.media["channel"] == "search")).any()


def test_market_in_media_but_not_in_kpi_is_named(tmp_path, frames) -> None:
    extra = frames["media"][frames["media"]["market"] == "FR"].assign(market="IT")
    frames["media"] = pd.concat([frames["media"], extra], ignore_index=True)
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("media.csv, column 'market', rows 322, 323")
        and "market(s) IT have media but no rows in kpi.csv" in p
        for p in found
    ), found


def test_series_too_short_for_adstock_and_seasonality(tmp_path) -> None:
    sim = simulate_mmm(2, markets=("DE",), n_channels=2, n_weeks=60)
    folder = write(tmp_path, {"kpi": sim.kpi, "media": sim.media, "controls": sim.controls})
    found = problems(folder)
    assert any(
        "market DE: 48 weeks to fit after the 12-week holdout, fewer than the 52" in p
        and "lower holdout_weeks" in p
        for p in found
    ), found
    assert read(folder, holdout_weeks=4).markets == ["DE"]


def test_lift_test_of_unknown_channel_or_outside_the_dates(tmp_path, frames) -> None:
    frames["lift_tests"] = pd.DataFrame(
        {
            "market": ["DE", "DE"],
            "channel": ["radio", "tv"],
            "start": ["2023-02-06", "2030-01-07"],
            "end": ["2023-03-06", "2030-02-04"],
            "x": [10.0, 10.0],
            "delta_x": [5.0, 5.0],
            "delta_y": [900.0, 900.0],
            "sigma": [100.0, 100.0],
        }
    )
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("lift_tests.csv, column 'channel', row 2")
        and "lift tests of channels without media rows: radio in DE" in p
        for p in found
    ), found
    assert any(
        p.startswith("lift_tests.csv, column 'start', row 3: lift tests outside") for p in found
    )


def test_controls_of_wildly_different_magnitudes_are_noted(tmp_path, frames) -> None:
    frames["controls"]["revenue_cents"] = frames["controls"]["price"] * 1_000_000
    data = read(write(tmp_path, frames), controls=["price", "revenue_cents"])
    assert any(
        "controls of wildly different magnitudes" in n and "revenue_cents" in n for n in data.notes
    )


def test_missing_control_column_names_the_config(tmp_path, frames) -> None:
    found = problems(write(tmp_path, frames), controls=["price", "promo"])
    assert any(
        p.startswith("controls.csv, column 'promo': missing column")
        and "remove 'promo' from controls in the config" in p
        for p in found
    ), found


def test_unsafe_market_id_is_refused_before_it_becomes_a_path(tmp_path, frames) -> None:
    for name in ("kpi", "media", "controls"):
        frames[name]["market"] = frames[name]["market"].replace("FR", "../FR")
    found = problems(write(tmp_path, frames))
    assert any(
        p.startswith("kpi.csv, column 'market', rows 82, 83") and "not a safe id" in p
        for p in found
    )


def test_several_problems_are_reported_at_once(tmp_path, frames) -> None:
    frames["kpi"] = frames["kpi"].drop(index=10)
    frames["media"].loc[7, "spend"] = -5.0
    frames["controls"] = frames["controls"].drop(columns=["price"])
    with pytest.raises(InputValidationError) as caught:
        read(write(tmp_path, frames))
    report = caught.value.report
    assert {p.file for p in report} == {"kpi.csv", "media.csv", "controls.csv"}
    assert str(caught.value).startswith("Input validation failed: 3 problems, nothing was written")


def test_missing_kpi_file_is_named(tmp_path, frames) -> None:
    del frames["kpi"]
    found = problems(write(tmp_path, frames))
    assert found[0].startswith("kpi.{csv,parquet}: missing file in")
