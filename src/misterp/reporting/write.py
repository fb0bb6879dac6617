"""Write a published wave's report to ``OUTPUT/WAVE/report/``: tables first, ``index.html`` last.

The report is derived from what was published (estimates, changes, trends, funnel,
competitors), so it is written after the tracking step and a failure in it never unpublishes
the wave (``update_report`` logs one line and records ``OUTPUT/WAVE/report.json``). A stale
``index.html`` is removed first and the new one written last: whoever finds one finds its
tables beside it, and a report that failed half way has none.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field

from misterp.config import ConfigError
from misterp.mrp.config import ReportingConfig
from misterp.mrp.published import AUDIENCES_FILE, MILESTONES_FILE
from misterp.mrp.records import Manifest, check_estimates
from misterp.records import Record, utc_now
from misterp.reporting import tables as t
from misterp.reporting.html import PageContext, render_page
from misterp.reporting.milestones import milestones_table
from misterp.reporting.smoothed import smoothed_table
from misterp.storage import ResultStore
from misterp.tracking.catalog import read_manifest
from misterp.tracking.changes import CHANGES_FILE, tracking_of
from misterp.tracking.comparisons import COMPARISONS_FILE
from misterp.tracking.competitors import COMPETITORS_FILE
from misterp.tracking.funnel import FUNNEL_FILE
from misterp.tracking.smoothed import SMOOTHED_FILE
from misterp.tracking.trends import TRENDS_FILE

__all__ = [
    "INDEX_FILE",
    "REPORT_FILE",
    "REPORT_FOLDER",
    "ReportOutcome",
    "ReportStepOutcome",
    "WaveReport",
    "build_report",
    "csv_bytes",
    "index_link",
    "index_location",
    "link_of",
    "location_of",
    "reporting_of",
    "tables_xlsx",
    "update_report",
    "write_report",
]

logger = logging.getLogger(__name__)

#: The report's folder, relative to the wave folder.
REPORT_FOLDER = "report"
#: The page, written last: its presence means the report is complete.
INDEX_FILE = "index.html"
#: The record of the last report step of a wave, relative to the wave folder.
REPORT_FILE = "report.json"

#: Said on the page when the wave's questions have no labels.
NO_LABELS = (
    "Questions are shown by their ids: add a label column to questions.csv to show how people "
    "read them."
)


class ReportStepOutcome(Record):
    """How a report step ended (also stored as ``report.json``); what it reported is the subclass's.

    One record for the tracker's waves (:class:`ReportOutcome`) and the media-mix runs
    (:class:`misterp.reporting.mmm_report.MMMReportOutcome`), so a caller shows either the same
    way (a line on the command line, a table and a link on the orchestrator's run).
    """

    status: Literal["written", "failed"]
    message: str
    #: Where a person opens the page (a local path or the store's URI) and a link to it.
    index: str | None = None
    link: str | None = None
    seconds: float = 0.0
    at: str = ""
    #: The headline as short rows for the orchestrator's UI; not stored in report.json.
    headline: tuple[dict[str, Any], ...] = Field(default=(), exclude=True)


class ReportOutcome(ReportStepOutcome):
    """How the report step of one wave ended (also stored as ``report.json``)."""

    wave: str


@dataclass(frozen=True)
class WaveReport:
    """A wave's report tables and what the page says beside them."""

    tables: t.ReportTables
    context: PageContext


def _optional_parquet(store: ResultStore, relative: str) -> pd.DataFrame | None:
    try:
        return store.read_parquet(relative)
    except FileNotFoundError:
        return None


def reporting_of(manifest: Manifest) -> ReportingConfig:
    """The reporting settings the wave was published with (defaults for older manifests)."""
    raw = manifest.config.get("reporting") or {}
    return ReportingConfig.model_validate(
        {k: v for k, v in raw.items() if k in ReportingConfig.model_fields}
    )


def _changes_note(store: ResultStore, wave: str, changes: pd.DataFrame | None) -> str | None:
    if changes is not None and not changes.empty:
        return None
    if changes is not None:
        return (
            "No changes: there is no earlier complete wave to compare with (this is the first "
            "tracked wave)."
        )
    try:
        record = store.read_json(f"{wave}/tracking.json")
        why = f"tracking {record.get('status')}: {record.get('message')}"
    except (FileNotFoundError, ValueError):
        why = "tracking has not run"
    return f"No changes for this wave ({why})."


def published_labels(estimates: pd.DataFrame) -> dict[str, str]:
    """Question id to label, from the estimates' ``label`` column (waves published with one).

    >>> frame = pd.DataFrame(
    ...     {"question_id": ["a", "a", "b"], "label": ["Knows A", "Knows A", None]}
    ... )
    >>> published_labels(frame)
    {'a': 'Knows A'}
    """
    if "label" not in estimates.columns:
        return {}
    named = estimates.dropna(subset=["label"]).drop_duplicates("question_id")
    return dict(zip(named["question_id"].astype(str), named["label"].astype(str), strict=True))


def build_report(
    store: ResultStore,
    wave: str,
    *,
    trend_waves: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> WaveReport:
    """Read a complete wave's published files and build its report tables and page context.

    Raises ``ConfigError`` for a wave that is not complete (no manifest) and ``RecordError``
    for estimates that do not belong to the manifest. Changes, trends, funnel and competitors
    are optional: a section without them says why on the page.
    """
    manifest = read_manifest(store, wave)
    if manifest is None:
        raise ConfigError(
            f"wave '{wave}' is not complete in {store.root_uri} (no manifest): nothing to "
            "report; list the waves with `misterp waves --output "
            f"{store.root_uri}` and choose a complete one"
        )
    reporting = reporting_of(manifest)
    tracking = tracking_of(manifest)
    data = store.read_bytes(f"{wave}/estimates.parquet")
    check_estimates(manifest, data, store.uri(f"{wave}/estimates.parquet"))
    estimates = pd.read_parquet(io.BytesIO(data))
    labels = {**published_labels(estimates), **(labels or {})}
    changes = _optional_parquet(store, f"{wave}/{CHANGES_FILE}")
    trends = _optional_parquet(store, TRENDS_FILE)
    group = reporting.headline_group
    window = trend_waves or reporting.trend_waves
    comparisons = _optional_parquet(store, f"{wave}/{COMPARISONS_FILE}")
    if comparisons is not None:
        # brand pairs grow with the square of the brands (50 brands x 10 families x 5 groups:
        # 61,250 a market): the exports keep the headline group's, the parquet has them all
        comparisons = comparisons[
            (comparisons["kind"] != "brand_vs_brand") | (comparisons["target_group"] == group)
        ]
    versus_rest, brand_pairs = t.comparisons_tables(comparisons, labels=labels)
    tables = t.ReportTables(
        headline=t.headline_table(
            estimates, changes, group=group, labels=labels, certainty=reporting.certainty
        ),
        changes=t.changes_table(changes, labels=labels, certainty=reporting.certainty),
        trends=t.trends_table(trends, wave, window, labels=labels),
        funnel=t.funnel_table(_optional_parquet(store, f"{wave}/{FUNNEL_FILE}"), labels=labels),
        competitors=t.competitors_table(
            _optional_parquet(store, f"{wave}/{COMPETITORS_FILE}"), labels=labels
        ),
        associations=t.association_table(estimates, group=group, labels=labels),
        mrp_raw_raked=t.comparison_table(estimates, labels=labels, certainty=reporting.certainty),
        audiences=t.audiences_table(_optional_parquet(store, f"{wave}/{AUDIENCES_FILE}")),
        smoothed=smoothed_table(
            _optional_parquet(store, f"{wave}/{SMOOTHED_FILE}"), changes, wave, labels=labels
        ),
        milestones=milestones_table(_optional_parquet(store, f"{wave}/{MILESTONES_FILE}")),
        group_vs_rest=versus_rest,
        brand_vs_brand=brand_pairs,
    )
    context = PageContext(
        wave=wave,
        published_at=manifest.created_at,
        health=manifest.counts.sentence(),
        headline_group=group,
        interval=reporting.interval,
        change_probability=tracking.change_probability,
        flags=tracking.flags,
        certainty=reporting.certainty,
        trend_waves=window,
        low_base=reporting.low_base,
        changes_note=_changes_note(store, wave, changes),
        trends_note=None
        if not tables.trends.empty
        else f"No trend rows for wave {wave} in {TRENDS_FILE} (its id is not a period of "
        "the configured kind, or tracking failed: see tracking.json).",
        labels_note=None if labels else NO_LABELS,
    )
    return WaveReport(tables, context)


def tables_xlsx(tables: t.ReportTables) -> bytes:
    """The tables as one workbook: a sheet each, header row frozen, columns fitted to content."""
    from openpyxl.utils import get_column_letter  # type: ignore[import-untyped]

    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="openpyxl") as writer:
        for name, frame in tables.sheets().items():
            frame.to_excel(writer, sheet_name=name, index=False, freeze_panes=(1, 0))
            sheet = writer.sheets[name]
            for number, column in enumerate(frame.columns, start=1):
                longest = max([len(str(column)), *(len(str(v)) for v in frame[column].head(1000))])
                sheet.column_dimensions[get_column_letter(number)].width = min(longest + 2, 60)
    return buffer.getvalue()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A table as the report's CSV."""
    # utf-8 with a byte-order mark: Excel opens it with ▲, ▼ and ⚠ intact; pandas skips the mark.
    return frame.to_csv(index=False).encode("utf-8-sig")


def write_report(
    store: ResultStore,
    wave: str,
    *,
    trend_waves: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> WaveReport:
    """Write ``OUTPUT/WAVE/report/``: the CSVs, ``tables.xlsx``, then ``index.html`` last.

    A stale ``index.html`` is removed before anything else, so a failure leaves no page beside
    half-written tables, and a page that exists has its tables beside it.

    Parameters
    ----------
    store
        The results root (local or ``s3://``); every write goes through it, atomically.
    wave
        A complete wave.
    trend_waves
        Waves in the trend charts and sheet; default: the wave's ``reporting.trend_waves``.
    labels
        Question id to label, shown beside the ids, over the labels the wave was published with
        (``questions.csv`` column ``label``); default: those alone.

    Returns
    -------
    WaveReport
        The tables and page context written.

    Raises
    ------
    ConfigError
        The wave is not complete.
    RecordError
        Its estimates do not belong to its manifest (another run wrote one of them).
    """
    folder = f"{wave}/{REPORT_FOLDER}"
    store.remove(f"{folder}/{INDEX_FILE}")
    report = build_report(store, wave, trend_waves=trend_waves, labels=labels)
    for name, frame in report.tables.sheets().items():
        store.write_bytes(f"{folder}/{name}.csv", csv_bytes(frame))
    store.write_bytes(f"{folder}/tables.xlsx", tables_xlsx(report.tables))
    page = render_page(report.tables, report.context)
    store.write_bytes(f"{folder}/{INDEX_FILE}", page.encode())
    logger.info("wave %s: report written to %s", wave, index_location(store, wave))
    return report


def _is_local(store: ResultStore) -> bool:
    protocol = store.fs.protocol
    return "file" in (protocol if isinstance(protocol, tuple) else (protocol,))


def location_of(store: ResultStore, relative: str) -> str:
    """Where a person opens a stored file: a local path, or the URI of a remote store."""
    if _is_local(store):
        return str(Path(store.root_path, relative))
    return store.uri(relative)


def link_of(store: ResultStore, relative: str) -> str:
    """A link to a stored file: ``file://`` for a local store, the store's URI otherwise."""
    location = location_of(store, relative)
    return Path(location).resolve().as_uri() if _is_local(store) else location


def index_location(store: ResultStore, wave: str) -> str:
    """Where a person opens the page: a local path, or the URI of a remote store."""
    return location_of(store, f"{wave}/{REPORT_FOLDER}/{INDEX_FILE}")


def index_link(store: ResultStore, wave: str) -> str:
    """A link to the page: ``file://`` for a local store, the store's URI otherwise."""
    return link_of(store, f"{wave}/{REPORT_FOLDER}/{INDEX_FILE}")


def update_report(
    store: ResultStore,
    wave: str,
    *,
    trend_waves: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> ReportOutcome:
    """Write the wave's report after publication; never raises, records ``report.json``.

    The wave is complete before this runs: a report that fails (a store hiccup, a table an
    older version wrote differently) is logged in one line and recorded, and the estimates
    stay published. ``misterp report --wave W`` writes it again.
    """
    started = time.perf_counter()
    outcome: ReportOutcome
    try:
        report = write_report(store, wave, trend_waves=trend_waves, labels=labels)
        outcome = ReportOutcome(
            wave=wave,
            status="written",
            message=f"report written to {index_location(store, wave)}",
            index=index_location(store, wave),
            link=index_link(store, wave),
            headline=tuple(t.headline_summary(report.tables.headline)),
        )
    except Exception as exc:  # the wave stays published whatever happens here
        logger.warning(
            "wave %s is published, but its report failed: %s: %s; write it again with "
            "misterp report --output %s --wave %s",
            wave,
            type(exc).__name__,
            exc,
            store.root_uri,
            wave,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        outcome = ReportOutcome(wave=wave, status="failed", message=f"{type(exc).__name__}: {exc}")
    outcome = outcome.model_copy(
        update={"seconds": round(time.perf_counter() - started, 3), "at": utc_now()}
    )
    try:
        store.write_bytes(f"{wave}/{REPORT_FILE}", outcome.model_dump_json(indent=2).encode())
    except Exception as exc:  # the outcome is returned either way; one line, traceback at DEBUG
        logger.warning(
            "could not record %s of wave %s (%s: %s)",
            REPORT_FILE,
            wave,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
    return outcome
