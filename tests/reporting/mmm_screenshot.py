"""Draw the README's picture of the media-mix report: ``python tests/reporting/mmm_screenshot.py
OUT.png PAGE`` (PAGE: a run's ``report/index.html``, e.g. ``mmm-demo/results/mmm/RUN/report/
index.html`` after ``misterp mmm demo``). Opens it in Debian's chromium, offline, and saves the
page from the top down to the end of the ROAS section at 1280 wide.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]

from offline_browser import ARGS, CHROMIUM  # noqa: E402


def main(target: str, page_file: str, *, full: bool = False) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort()
        )
        page.goto(Path(page_file).resolve().as_uri(), wait_until="load")
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.plotly-graph-div'))"
            ".every(d => d.querySelector('.main-svg') !== null)"
        )
        if full:
            page.screenshot(path=target, full_page=True)
        else:
            box = page.locator("#roas").bounding_box()
            assert box is not None
            bottom = box["y"] + box["height"] + 10
            page.screenshot(path=target, clip={"x": 0, "y": 0, "width": 1280, "height": bottom})
        browser.close()
    print(f"{target}: {Path(target).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], full="--full" in sys.argv[3:])
