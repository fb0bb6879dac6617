"""The report page in a real headless Chromium, offline: it renders, every chart, no errors.

Every request that is not a ``file://`` URL is aborted and recorded, so the page passing here
is a page that works without a network. Debian's chromium is used (``make test`` installs it;
Playwright's own browser downloads are not); without it the test fails, it never skips.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from misterp.reporting.html import SECTIONS
from misterp.reporting.tables import ARROWS
from misterp.reporting.write import INDEX_FILE, REPORT_FOLDER

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAVE = "2026-11"
#: Charts of the test store (one market, two brands, two association options, four groups):
#: trends of aware, consider and each association option; one funnel with a panel per brand;
#: one association heatmap; MRP vs raw vs raked per target group.
EXPECTED_CHARTS = {"trends": 4, "funnel": 1, "associations": 1, "comparison": 4}

RENDERED = """() => {
    const counts = {};
    for (const figure of document.querySelectorAll('figure.chart')) {
        const graph = figure.querySelector('.plotly-graph-div');
        const drawn = graph !== null && graph.querySelector('.main-svg') !== null;
        const key = figure.dataset.section + (drawn ? '' : ':blank');
        counts[key] = (counts[key] || 0) + 1;
    }
    return counts;
}"""

HEADLINE = """() => Array.from(
    document.querySelectorAll('table.headline[data-market="DE"] tbody tr'),
    row => Array.from(row.cells, cell => cell.innerText.trim()))"""


def open_offline(page_path: Path) -> tuple[dict[str, int], list[list[str]], list[str], list[str]]:
    """Open the page in Chromium with the network cut off; what rendered and what went wrong."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the report's browser test needs Debian's chromium; "
            "`make test` installs it (apt-get install -y chromium)"
        )
    errors: list[str] = []
    blocked: list[str] = []

    def route(route: Any) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.route("**/*", route)
            page.goto(page_path.as_uri(), wait_until="load")
            # plotly draws each chart asynchronously after load; a chart that never draws is
            # counted as blank below, with the errors that say why
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                    ".every(d => d.querySelector('.main-svg') !== null)",
                    timeout=30_000,
                )
            counts = page.evaluate(RENDERED)
            headline = page.evaluate(HEADLINE)
            sections = page.eval_on_selector_all("main > section", "s => s.map(e => e.id)")
        finally:
            browser.close()
    assert sections == list(SECTIONS)
    return counts, headline, errors, blocked


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
        assert row[3].endswith("%"), row
