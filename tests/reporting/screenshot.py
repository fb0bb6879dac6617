"""Draw the README's picture of the report: ``python tests/reporting/screenshot.py OUT.png [PAGE]``.

Opens ``PAGE`` (a report's ``index.html``; the README's picture is the demo's:
``demo-results/results/2026-11/report/index.html`` after ``make demo``) or, without it, the last
wave's report of the report tests' three-wave store built in a temporary folder, in Debian's
chromium, offline, and saves the top of the page at 1280 x 900 (OUT.png) and the trends and
funnel sections (OUT-trends.png, OUT-funnel.png).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from offline_browser import ARGS, CHROMIUM  # noqa: E402
from report_store import WAVES, build_three_waves  # noqa: E402


def main(target: str, page_file: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        if page_file is None:
            build_three_waves(Path(folder))
            page_path = Path(folder, "results", WAVES[-1], "report", "index.html")
        else:
            page_path = Path(page_file).resolve()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route(
                "**/*",
                lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort(),
            )
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
                ".every(d => d.querySelector('.main-svg') !== null)"
            )
            page.screenshot(path=target, full_page=False)
            # the charts too: the trends and the funnel sections, one picture each beside it
            for section in ("trends", "funnel"):
                page.locator(f"#{section}").screenshot(
                    path=str(Path(target).with_name(f"{Path(target).stem}-{section}.png"))
                )
            browser.close()
    print(f"{target}: {Path(target).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else "docs/report.png",
        sys.argv[2] if len(sys.argv) > 2 else None,
    )
