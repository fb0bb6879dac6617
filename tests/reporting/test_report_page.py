"""The report folder and its page, without a browser: what is written, in which order, and why.

The browser test opens the page; these read its HTML and the store (seconds).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.config import ConfigError
from misterp.mrp.wave import WaveOutcome
from misterp.records import RecordError
from misterp.reporting import tables as t
from misterp.reporting.write import (
    INDEX_FILE,
    REPORT_FILE,
    REPORT_FOLDER,
    index_location,
    update_report,
    write_report,
)
from misterp.storage import ResultStore
from tracking_support import publish_fake_wave

HOSTILE = "<img src=x onerror=alert(1)>"


def test_every_published_wave_has_its_report_recorded(
    three_waves: list[WaveOutcome], results: Path
) -> None:
    for outcome in three_waves:
        wave = outcome.wave_id
        assert outcome.report is not None
        assert outcome.report.status == "written", outcome.report
        assert outcome.report.index == str(results / wave / REPORT_FOLDER / INDEX_FILE)
        assert outcome.report.link == (results / wave / REPORT_FOLDER / INDEX_FILE).as_uri()
        record = json.loads((results / wave / REPORT_FILE).read_text())
        assert record["status"] == "written"
        assert "headline" not in record  # the UI summary is not stored
        files = sorted(p.name for p in (results / wave / REPORT_FOLDER).iterdir())
        assert files == sorted([INDEX_FILE, "tables.xlsx", *(f"{s}.csv" for s in t.SHEETS)])


def test_the_page_inlines_plotly_once_and_loads_nothing_from_elsewhere(results: Path) -> None:
    page = (results / "2026-11" / REPORT_FOLDER / INDEX_FILE).read_text()
    assert page.count("* plotly.js v") == 1
    assert page.count("Plotly.newPlot(") == 10  # 4 trends, 1 funnel, 1 heatmap, 4 groups
    # no external script, stylesheet or image (plotly.js itself mentions URLs in its code)
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)


def test_the_first_wave_says_it_has_no_changes(results: Path) -> None:
    page = (results / "2026-09" / REPORT_FOLDER / INDEX_FILE).read_text()
    assert "No changes: there is no earlier complete wave to compare with" in page
    # every headline row says why it has no arrow
    assert page.count('<span class="muted">no previous wave</span>') == 8
    later = (results / "2026-10" / REPORT_FOLDER / INDEX_FILE).read_text()
    assert "Change vs 2026-09" in later


def _fake_store(tmp_path: Path) -> ResultStore:
    """A wave without funnel, competitors, changes or trends; estimates of an old layout."""
    store = ResultStore(str(tmp_path / "results"))
    values = np.linspace(0.25, 0.75, 40)
    publish_fake_wave(
        store,
        "2026-11",
        {
            "DE/aware_b1/yes": {"all": values, HOSTILE: values},
            "DE/consider_b1/yes": {"all": values / 2, HOSTILE: values / 2},
        },
        target_groups={HOSTILE: {"gender": ["female"]}},
        tracking={"period": "month"},
    )
    return store


def test_sections_without_data_say_so_and_untrusted_text_is_escaped(tmp_path: Path) -> None:
    store = _fake_store(tmp_path)
    report = write_report(store, "2026-11", labels={"aware_b1": HOSTILE})
    page = Path(index_location(store, "2026-11")).read_text()

    assert len(report.tables.headline) == 2
    assert "No changes for this wave (tracking has not run)." in page
    assert "No trend rows for wave 2026-11 in trends.parquet" in page
    assert "No funnel in this wave: configure reporting.funnel" in page
    assert "No association questions" in page
    # a label and a target group name are text, never markup, in the page and in the charts
    assert HOSTILE not in page
    assert html_escaped(HOSTILE) in page
    assert "Questions are shown by their ids" not in page  # labels were given


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_without_labels_the_page_says_ids_are_shown(tmp_path: Path) -> None:
    store = _fake_store(tmp_path)
    write_report(store, "2026-11")
    page = Path(index_location(store, "2026-11")).read_text()
    assert "Questions are shown by their ids: add a label column to questions.csv" in page


def test_a_failed_report_leaves_no_page_and_the_wave_published(tmp_path: Path) -> None:
    store = _fake_store(tmp_path)
    write_report(store, "2026-11")
    index = Path(index_location(store, "2026-11"))
    assert index.exists()
    # estimates that no longer belong to the manifest: the report refuses to read them
    estimates = store.read_parquet("2026-11/estimates.parquet").iloc[:1]
    store.write_parquet("2026-11/estimates.parquet", estimates)

    outcome = update_report(store, "2026-11")

    assert outcome.status == "failed"
    assert outcome.message.startswith("RecordError")
    assert not index.exists()  # the stale page went first
    assert store.is_complete("2026-11")
    assert store.read_json(f"2026-11/{REPORT_FILE}")["status"] == "failed"
    with pytest.raises(RecordError):
        write_report(store, "2026-11")


def test_an_incomplete_wave_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path / "results"))
    publish_fake_wave(
        store, "2026-10", {"DE/aware_b1/yes": {"all": np.full(4, 0.5)}}, complete=False
    )
    with pytest.raises(ConfigError, match=r"wave '2026-10' is not complete .*misterp waves"):
        write_report(store, "2026-10")


def test_a_report_on_s3_is_written_there_and_linked_by_its_uri(
    s3_bucket: tuple[str, dict[str, object]],
) -> None:
    bucket, options = s3_bucket
    store = ResultStore(f"{bucket}/results", options)
    publish_fake_wave(store, "2026-11", {"DE/aware_b1/yes": {"all": np.full(4, 0.5)}})

    outcome = update_report(store, "2026-11")

    uri = f"{bucket}/results/2026-11/report/index.html"
    assert (outcome.status, outcome.index, outcome.link) == ("written", uri, uri)
    assert store.exists("2026-11/report/index.html")
    assert store.exists("2026-11/report/tables.xlsx")


def test_the_page_names_the_flag_rule_in_force_and_grades_every_headline_estimate(
    results: Path,
) -> None:
    page = (results / "2026-11" / REPORT_FOLDER / INDEX_FILE).read_text()
    assert "flagged under a false discovery rate of q = 0.1 over the wave" in page
    assert "Flag rule: ▲/▼ mark the changes" in page
    assert "● solid (± 5 points or less), ◐ indicative (± 10 or less)" in page
    headline = page.split('<section id="headline">')[1].split("</section>")[0]
    rows = headline.count("<tr>") + headline.count('<tr class="low">') - headline.count("<thead>")
    assert headline.count('<span class="grade" title="certainty: ') == rows


def test_the_page_shows_brand_vs_brand_as_a_matrix_and_the_sheets_hold_every_comparison(
    results: Path,
) -> None:
    page = (results / "2026-11" / REPORT_FOLDER / INDEX_FILE).read_text()
    section = page.split('<section id="comparisons">')[1].split("</section>")[0]
    assert "Group vs rest, brand vs brand" in section
    pairs = pd.read_csv(results / "2026-11" / REPORT_FOLDER / "brand_vs_brand.csv")
    versus_rest = pd.read_csv(results / "2026-11" / REPORT_FOLDER / "group_vs_rest.csv")
    assert len(versus_rest) > 0
    assert set(versus_rest[t.COMPARISON_FLAG]) <= {"above", "below", "level"}
    headline_pairs = pairs[pairs[t.GROUP] == "all"]
    families = headline_pairs.drop_duplicates([t.MARKET, t.FAMILY, t.OPTION])
    assert section.count('data-kind="brand_vs_brand"') == min(len(families), 12)
    # a matrix is brands x brands: each pair shown both ways, never the whole list
    assert section.count("<tr>") < len(pairs) + len(versus_rest)
