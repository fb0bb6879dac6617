"""The report page in a real headless Chromium, offline: it renders, every chart, no errors.

Every request that is not a ``file://`` URL is aborted and recorded, so the page passing here
is a page that works without a network. Debian's chromium is used (``make test`` installs it;
Playwright's own browser downloads are not); without it the test fails, it never skips.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from offline_browser import offline_page

from misterp.reporting.html import SECTIONS
from misterp.reporting.tables import ARROWS, CERTAINTY_MARKS
from misterp.reporting.write import INDEX_FILE, REPORT_FOLDER

WAVE = "2026-11"
#: Charts of the test store (one market, two brands, two association options, four groups):
#: trends of aware, consider and each association option; one funnel with a panel per brand;
#: one association heatmap; MRP vs raw vs raked per target group.
EXPECTED_CHARTS = {"trends": 4, "funnel": 1, "associations": 1, "comparison": 4}

HEADLINE = """() => Array.from(
    document.querySelectorAll('table.headline[data-market="DE"] tbody tr'),
    row => Array.from(row.cells, cell => cell.innerText.trim()))"""


def open_offline(page_path: Path) -> tuple[dict[str, int], list[list[str]], list[str], list[str]]:
    """Open the page with the network cut off: charts drawn, headline, errors, blocked URLs."""
    with offline_page(page_path) as loaded:
        counts = loaded.chart_counts()
        headline = loaded.page.evaluate(HEADLINE)
        sections = loaded.page.eval_on_selector_all("main > section", "s => s.map(e => e.id)")
    # the test store is published without tracking.smoothing: no smoothed section
    assert sections == [key for key in SECTIONS if key != "smoothed"]
    return counts, headline, loaded.errors, loaded.blocked


def test_the_report_renders_offline_in_chromium(results: Path) -> None:
    counts, headline, errors, blocked = open_offline(results / WAVE / REPORT_FOLDER / INDEX_FILE)

    assert errors == []
    assert blocked == []
    assert counts == EXPECTED_CHARTS
    # the headline: one row per estimate of 'all', in published order, its arrow the flag's
    estimates = pd.read_parquet(results / WAVE / "estimates.parquet").query("target_group == 'all'")
    changes = pd.read_parquet(results / WAVE / "changes.parquet").query(
        "target_group == 'all' and reference == 'previous'"
    )
    flags = dict(
        zip(changes["question_id"] + "/" + changes["option"], changes["flag"], strict=True)
    )
    assert [row[1:3] for row in headline] == estimates[["question_id", "option"]].values.tolist()
    for row in headline:
        arrow = ARROWS[flags[f"{row[1]}/{row[2]}"]]
        assert row[5].startswith(arrow), row
        # the estimate, then its certainty grade's marker (issue 24)
        estimate, mark = row[3].rsplit(" ", 1)
        assert estimate.endswith("%"), row
        assert mark in set(CERTAINTY_MARKS.values()), row
