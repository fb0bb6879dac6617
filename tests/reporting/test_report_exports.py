"""tables.xlsx and its CSV twins: the same rows, the documented sheets, readable and frozen."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import load_workbook

from misterp.mrp.wave import WaveOutcome
from misterp.reporting import tables as t

WAVE = "2026-11"


def test_the_workbook_has_the_documented_sheets_and_the_rows_of_the_csvs(
    results: Path,
) -> None:
    folder = results / WAVE / "report"
    sheets = pd.read_excel(folder / "tables.xlsx", sheet_name=None)

    assert list(sheets) == list(t.SHEETS)
    for name, sheet in sheets.items():
        twin = pd.read_csv(folder / f"{name}.csv")
        assert list(sheet.columns) == list(twin.columns), name
        pd.testing.assert_frame_equal(sheet, twin, check_dtype=False, obj=name)
    # one market, two brands: aware, consider and two association options each
    assert len(sheets["headline"]) == 8
    assert sheets["headline"][t.DIRECTION].isin(["▲", "▼", "–"]).all()
    assert set(sheets["trends"][t.WAVE]) == {"2026-09", "2026-10", "2026-11"}
    assert len(sheets["changes"]) == 8 * 4  # every estimate and group against 2026-10
    assert len(sheets["funnel"]) == 2 * 2 * 4  # two brands, two stages, four groups


def test_the_workbook_is_readable_header_frozen_columns_fitted(results: Path) -> None:
    workbook = load_workbook(results / WAVE / "report" / "tables.xlsx", read_only=False)
    headline = workbook["headline"]
    header = [cell.value for cell in headline[1]]
    assert header[:5] == [t.MARKET, t.BRAND, t.QUESTION, t.OPTION, t.GROUP]
    for sheet in workbook.worksheets:
        assert sheet.freeze_panes == "A2", sheet.title
    question = headline.column_dimensions["C"].width
    assert question >= len("consider_brand01") + 2  # the longest id fits


def test_the_page_and_the_exports_come_from_the_same_table(
    three_waves: list[WaveOutcome], results: Path
) -> None:
    headline = pd.read_csv(results / WAVE / "report" / "headline.csv")
    estimates = three_waves[-1].estimates
    published = estimates[estimates["target_group"] == "all"]
    assert headline[t.QUESTION].tolist() == published["question_id"].tolist()
    assert headline[t.ESTIMATE].tolist() == (published["mean"] * 100).round(1).tolist()
