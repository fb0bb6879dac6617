"""Campaign milestones (``milestones.csv``): validated with the input, staged and published."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from test_validation import DEMOGRAPHICS, clean_frames, write

from flows.outcome import ExitCode, exit_code_for
from misterp.mrp.config import parse_config
from misterp.mrp.published import MILESTONES_FILE
from misterp.mrp.staging import open_staged_wave
from misterp.mrp.validation import InputValidationError, read_wave
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from support import PLUMBING, no_mcmc_backends, small_wave_config


def _milestones(*rows: tuple[str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["date", "market", "label"])


def test_valid_milestones_are_read_in_date_order(tmp_path: Path) -> None:
    frames = clean_frames() | {
        "milestones": _milestones(
            ("2026-11-03", "all", "TV campaign starts"), ("2026-10-15", "DE", "Price cut")
        )
    }

    wave = read_wave(write(tmp_path, frames), DEMOGRAPHICS)

    assert wave.milestones is not None
    assert wave.milestones.to_dict("records") == [
        {"date": "2026-10-15", "market": "DE", "label": "Price cut"},
        {"date": "2026-11-03", "market": "all", "label": "TV campaign starts"},
    ]


def test_a_wave_without_milestones_has_none(tmp_path: Path) -> None:
    assert read_wave(write(tmp_path, clean_frames()), DEMOGRAPHICS).milestones is None


def test_unknown_markets_and_bad_dates_are_reported_with_rows_and_fix(tmp_path: Path) -> None:
    frames = clean_frames() | {
        "milestones": _milestones(
            ("2026-11-03", "IT", "Launch in Italy"),
            ("2026-02-30", "DE", "No such day"),
            ("03/11/2026", "FR", "Day first"),
        )
    }

    with pytest.raises(InputValidationError) as info:
        read_wave(write(tmp_path, frames), DEMOGRAPHICS)

    problems = {p.column: p for p in info.value.report.problems if p.file == "milestones.csv"}
    assert set(problems) == {"date", "market"}  # every problem at once
    date, market = problems["date"], problems["market"]
    assert date.rows == [3, 4]  # file lines (the header is line 1)
    assert "YYYY-MM-DD" in date.message
    assert "e.g. 2026-11-03" in date.fix
    assert market.rows == [2]
    assert "'IT'" in market.message
    assert "DE, FR" in market.message
    assert "all" in market.fix
    assert exit_code_for(info.value) is ExitCode.INVALID


def test_milestones_are_published_with_the_wave_drawn_in_its_report_and_kept_for_a_rerun(
    tmp_path: Path,
) -> None:
    raw = small_wave_config(tmp_path, wave="2026-11", spec={"markets": ("DE",)}, **PLUMBING)
    _milestones(("2026-11-03", "DE", "TV campaign starts")).to_csv(
        tmp_path / "input" / "milestones.csv", index=False
    )

    outcome = run_wave_inline(parse_config(raw), backends=no_mcmc_backends())

    store = ResultStore(str(tmp_path / "results"))
    assert outcome.manifest.files["milestones"] == MILESTONES_FILE
    assert store.read_parquet(f"2026-11/{MILESTONES_FILE}")["label"].tolist() == [
        "TV campaign starts"
    ]
    assert outcome.report is not None
    assert outcome.report.status == "written", outcome.report.message
    page = store.read_bytes("2026-11/report/index.html").decode()
    assert "TV campaign starts" in page
    assert store.exists("2026-11/report/milestones.csv")
    reopened = open_staged_wave(str(tmp_path / "results"), "2026-11")  # what a re-run reads
    assert reopened.milestones is not None
    assert reopened.milestones.to_dict("records") == [
        {"date": "2026-11-03", "market": "DE", "label": "TV campaign starts"}
    ]
