"""Open a report page in Debian's headless chromium with the network cut off.

Shared by the tracker's and the media-mix report's browser tests and the screenshot script.
Every request that is not a ``file://`` URL is aborted and recorded, so a page that passes works
without a network. Playwright's own browser downloads are not used (they fail on this kind of
machine); ``make test`` installs Debian's chromium. Without it the tests fail, never skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

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
#: Charts per section of the page, ``SECTION:blank`` for charts that never drew.
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


@dataclass
class OfflinePage:
    """A loaded page, and the console errors and blocked requests seen while loading it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def chart_counts(self) -> dict[str, int]:
        """Charts per section (``SECTION:blank`` for charts that did not draw)."""
        return dict(self.page.evaluate(RENDERED))


@contextlib.contextmanager
def offline_page(page_path: Path) -> Iterator[OfflinePage]:
    """Load ``page_path`` offline and wait (up to 30 s) for every plotly chart to draw."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the report's browser tests need Debian's chromium; "
            "`make test` installs it (apt-get install -y chromium)"
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            loaded = OfflinePage(page)

            def route(route: Any) -> None:
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    loaded.blocked.append(route.request.url)
                    route.abort()

            def console(message: Any) -> None:
                if message.type == "error":
                    loaded.errors.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda exc: loaded.errors.append(str(exc)))
            page.route("**/*", route)
            page.goto(page_path.as_uri(), wait_until="load")
            # plotly draws each chart asynchronously after load; a chart that never draws is
            # counted as blank, with the errors that say why
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                    ".every(d => d.querySelector('.main-svg') !== null)",
                    timeout=30_000,
                )
            yield loaded
        finally:
            browser.close()
