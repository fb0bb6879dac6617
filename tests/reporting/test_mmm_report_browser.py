"""The media-mix report in a real headless Chromium, offline: every chart draws, no errors.

As ``test_report_browser.py``: Debian's chromium, every request that is not ``file://`` aborted
and recorded. The run is made with the fake sampler (no MCMC), with a budget and one market
flagged.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from mmm_run_store import RUN, fake_run
from test_report_browser import ARGS, CHROMIUM, RENDERED

from misterp.reporting.mmm_report import MMM_SECTIONS

#: Two markets, each: contributions, ROAS, response curves.
EXPECTED_CHARTS = {"contributions": 2, "roas": 2, "curves": 2}


def test_the_mmm_report_renders_offline_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    fake_run(tmp_path)
    page_path = tmp_path / "out" / "mmm" / RUN / "report" / "index.html"
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
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                    ".every(d => d.querySelector('.main-svg') !== null)",
                    timeout=30_000,
                )
            counts = page.evaluate(RENDERED)
            sections = page.eval_on_selector_all("main > section", "s => s.map(e => e.id)")
            tables = page.eval_on_selector_all("table.data", "t => t.map(e => e.dataset.table)")
            flagged = page.eval_on_selector_all(
                "table[data-table=diagnostics] tr.flagged", "r => r.map(e => e.cells[0].innerText)"
            )
        finally:
            browser.close()
    assert errors == []
    assert blocked == []
    assert sections == list(MMM_SECTIONS)
    assert counts == EXPECTED_CHARTS
    assert tables == ["roas", "budget", "diagnostics"]
    assert flagged == ["FR"]
