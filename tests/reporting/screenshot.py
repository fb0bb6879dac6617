"""Draw the README's picture of the report: ``python tests/reporting/screenshot.py OUT.png``.

Builds the report tests' three-wave store in a temporary folder, opens the last wave's report
in Debian's chromium, offline, and saves the top of the page at 1280 x 900.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from report_store import WAVES, build_three_waves  # noqa: E402
from test_report_browser import ARGS, CHROMIUM  # noqa: E402


def main(target: str) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        build_three_waves(Path(folder))
        page_path = Path(folder, "results", WAVES[-1], "report", "index.html")
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
            browser.close()
    print(f"{target}: {Path(target).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/report.png")
