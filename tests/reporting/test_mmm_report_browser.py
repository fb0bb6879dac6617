"""The media-mix report in a real headless Chromium, offline: every chart draws, no errors.

As ``test_report_browser.py``: Debian's chromium, every request that is not ``file://`` aborted
and recorded. The run is made with the fake sampler (no MCMC), with a budget and one market
flagged.
"""

from __future__ import annotations

from pathlib import Path

from mmm_run_store import RUN, fake_run
from offline_browser import offline_page

from misterp.reporting.mmm_report import MMM_SECTIONS

#: Two markets, each: contributions, ROAS, response curves.
EXPECTED_CHARTS = {"contributions": 2, "roas": 2, "curves": 2}


def test_the_mmm_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    fake_run(tmp_path)
    page_path = tmp_path / "out" / "mmm" / RUN / "report" / "index.html"

    with offline_page(page_path) as loaded:
        counts = loaded.chart_counts()
        page = loaded.page
        sections = page.eval_on_selector_all("main > section", "s => s.map(e => e.id)")
        tables = page.eval_on_selector_all("table.data", "t => t.map(e => e.dataset.table)")
        flagged = page.eval_on_selector_all(
            "table[data-table=diagnostics] tr.flagged", "r => r.map(e => e.cells[0].innerText)"
        )
    errors, blocked = loaded.errors, loaded.blocked
    assert errors == []
    assert blocked == []
    assert sections == list(MMM_SECTIONS)
    assert counts == EXPECTED_CHARTS
    assert tables == ["roas", "budget", "diagnostics"]
    assert flagged == ["FR"]
