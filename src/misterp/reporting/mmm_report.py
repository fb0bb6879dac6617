"""A media-mix run's report: ``OUTPUT/mmm/RUN/report/``, CSVs first, ``index.html`` last.

Built only from what the run published (its manifest and the tables whose sha256 it names), on
the tracker report's page skeleton (``html.document``) and chart theme. As for a wave, the
report is written after the manifest and never unpublishes the run: ``update_mmm_report``
logs a failure in one line and records ``OUTPUT/mmm/RUN/report.json``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from misterp.errors import ConfigError
from misterp.ids import ID_RULE, id_problem, shown
from misterp.mmm.outputs import MMMManifest
from misterp.records import RecordError, utc_now
from misterp.reporting.charts import Chart
from misterp.reporting.html import charts_grid, document, empty, escape
from misterp.reporting.mmm_charts import contribution_charts, response_charts, roas_charts
from misterp.reporting.mmm_tables import (
    FLAG,
    MMMReportTables,
    budget_view,
    diagnostics_view,
    roas_headline,
    roas_view,
)
from misterp.reporting.write import (
    INDEX_FILE,
    REPORT_FILE,
    REPORT_FOLDER,
    ReportStepOutcome,
    csv_bytes,
    link_of,
)
from misterp.reporting.write import location_of as _location
from misterp.storage import MANIFEST, ResultStore

__all__ = [
    "MMM_SECTIONS",
    "MMMPageContext",
    "MMMReportOutcome",
    "build_mmm_report",
    "check_published_run",
    "mmm_index_location",
    "published_runs",
    "render_mmm_page",
    "update_mmm_report",
    "write_mmm_report",
]

logger = logging.getLogger(__name__)

#: Section ids of the page, in order, with their headings.
MMM_SECTIONS: dict[str, str] = {
    "contributions": "Contributions over time",
    "roas": "ROAS and marginal ROAS",
    "curves": "Response curves",
    "budget": "Budget recommendation",
    "diagnostics": "Fit diagnostics",
}


@dataclass(frozen=True)
class MMMPageContext:
    """What the page says about the run beside its tables."""

    run: str
    published_at: str | None
    health: str
    interval: float
    #: Why there is no budget section (None: there is one).
    budget_note: str | None = None
    #: Why the contributions chart has no total band (None: it has one).
    fitted_note: str | None = None


class MMMReportOutcome(ReportStepOutcome):
    """How the report step of one media-mix run ended (also stored as ``report.json``).

    Its ``headline`` is the ROAS per market (:func:`~misterp.reporting.mmm_tables.roas_headline`).
    """

    run: str


def _folder(run: str) -> str:
    return f"mmm/{run}"


def _table(store: ResultStore, manifest: MMMManifest, stem: str) -> pd.DataFrame | None:
    """A published table, checked against the manifest's sha256; None if not published."""
    name = manifest.files.get(stem)
    if name is None:
        return None
    relative = f"{_folder(manifest.run)}/{name}"
    data = store.read_bytes(relative)
    expected = manifest.sha256.get(name)
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise RecordError(
            f"{store.uri(relative)} does not belong to the run's manifest (sha256 differs): "
            "another run wrote it; run the media-mix run again"
        )
    return pd.read_parquet(io.BytesIO(data))


def published_runs(store: ResultStore) -> list[str]:
    """The media-mix runs under ``OUTPUT/mmm/`` that have a manifest, sorted."""
    parts = (path.split("/") for path in store.list("mmm"))
    return sorted({p[1] for p in parts if len(p) == 3 and p[0] == "mmm" and p[2] == MANIFEST})


def check_published_run(store: ResultStore, run: str) -> str:
    """``run`` when it names a published media-mix run in ``store``; else say which exist.

    A command that writes the report of a run checks this first, so an unknown or unfinished
    run is refused with its path and the fix, and nothing is written for it.

    Raises
    ------
    ConfigError
        The run id is not a safe id, there is no such run, or it has no manifest yet.
    """
    problem = id_problem(run)
    if problem is not None:
        raise ConfigError(
            f"run id {shown(run)} {problem}; run ids are folders (OUTPUT/mmm/RUN/), so use "
            f"{ID_RULE}, as the run's config or `misterp mmm run` printed it"
        )
    folder = _folder(run)
    if store.exists(f"{folder}/{MANIFEST}"):
        return run
    if store.list(folder):
        raise ConfigError(
            f"media-mix run {run} in {store.uri(folder)} is not published (no {MANIFEST}: it "
            "was interrupted or is still running): finish it with `misterp mmm run --config "
            "CONFIG` (a re-run reuses its converged markets), then write its report"
        )
    runs = published_runs(store)
    listed = f"published runs there: {', '.join(runs)}" if runs else "no published runs there"
    raise ConfigError(
        f"no media-mix run {shown(run)} in {store.uri('mmm')} ({listed}): give the id of a "
        "published run with --run, or check --output"
    )


def build_mmm_report(store: ResultStore, run: str) -> tuple[MMMReportTables, MMMPageContext]:
    """Read a complete run's manifest and tables; the report tables and page context.

    Raises ``ConfigError`` for a run without a manifest (not complete) and ``RecordError`` for
    a table the manifest does not name by its sha256.
    """
    relative = f"{_folder(run)}/{MANIFEST}"
    if not store.exists(relative):
        raise ConfigError(
            f"media-mix run '{run}' is not complete in {store.root_uri} (no manifest): nothing "
            "to report; run it with `misterp mmm run --config ...`"
        )
    manifest = MMMManifest.from_json(store.read_bytes(relative), store.uri(relative))
    frames = {
        stem: _table(store, manifest, stem)
        for stem in ("contributions", "fitted", "roas", "response_curves", "budget", "diagnostics")
    }
    roas = frames["roas"] if frames["roas"] is not None else pd.DataFrame()
    budget = frames["budget"]
    diagnostics = frames["diagnostics"]
    if diagnostics is None or diagnostics.empty:
        diagnostics = pd.DataFrame([m.diagnostics() for m in manifest.markets])
    budget_note = None
    if budget is None:
        budget_note = "No budget recommendation: the run's config has no budget section."
    elif budget.empty:
        budget_note = "No budget recommendation: no market converged (it needs a converged fit)."
    tables = MMMReportTables(
        roas=roas_view(roas) if not roas.empty else pd.DataFrame(),
        budget=budget_view(budget) if budget is not None and not budget.empty else None,
        diagnostics=diagnostics_view(diagnostics),
        contributions=frames["contributions"]
        if frames["contributions"] is not None
        else pd.DataFrame(),
        fitted=frames["fitted"],
        response_curves=(
            frames["response_curves"] if frames["response_curves"] is not None else pd.DataFrame()
        ),
        roas_raw=roas,
    )
    context = MMMPageContext(
        run=run,
        published_at=manifest.created_at,
        health=manifest.counts.sentence(),
        interval=float(manifest.config.get("interval", 0.9)),
        budget_note=budget_note,
        fitted_note=None
        if frames["fitted"] is not None
        else "This run predates fitted.parquet: the model total and its band are not shown.",
    )
    return tables, context


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _cell(value: object) -> str:
    """A cell as the tables rounded it (thousands separated); nothing for a missing number."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:,}" if _is_number(value) else str(value)


def data_table(frame: pd.DataFrame, kind: str, *, flagged: Sequence[bool] | None = None) -> str:
    """A table of the page: every header and cell escaped, numbers right-aligned."""
    heads = "".join(f"<th>{escape(c)}</th>" for c in frame.columns)
    rows = []
    for number, row in enumerate(frame.itertuples(index=False)):
        cells = "".join(
            f'<td class="num">{escape(_cell(v))}</td>'
            if _is_number(v)
            else f"<td>{escape(_cell(v))}</td>"
            for v in row
        )
        mark = ' class="flagged"' if flagged is not None and flagged[number] else ""
        rows.append(f"<tr{mark}>{cells}</tr>")
    return (
        f'<div class="scroll"><table class="data" data-table="{escape(kind)}"><thead><tr>'
        f"{heads}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _lead(text: str) -> str:
    return f'<p class="lead">{escape(text)}</p>'


def _charts_or(charts: list[Chart], section: str, lead: str, why: str) -> str:
    return _lead(lead) + charts_grid(charts, section) if charts else empty(why)


def render_mmm_page(tables: MMMReportTables, context: MMMPageContext) -> str:
    """The whole page: one section per entry of ``MMM_SECTIONS``, plotly.js inlined once."""
    level = f"{context.interval * 100:.0f}%"
    no_draws = "No market of this run has draws (every fit failed): see the fit diagnostics."
    contributions = _charts_or(
        contribution_charts(tables.contributions, tables.fitted),
        "contributions",
        f"Weekly contribution of each channel stacked on the baseline (means); the line is the "
        f"model's total with its {level} interval, the dots the KPI. Fitted weeks only."
        + (f" {context.fitted_note}" if context.fitted_note else ""),
        no_draws,
    )
    roas = _charts_or(
        roas_charts(tables.roas_raw),
        "roas",
        f"KPI per unit of spend over the fitted weeks, with {level} intervals. Marginal ROAS: "
        "what the next unit of spend returns at the current spend (below the ROAS: the channel "
        "is saturating).",
        no_draws,
    )
    if not tables.roas.empty:
        roas += data_table(tables.roas, "roas")
    curves = _charts_or(
        response_charts(tables.response_curves),
        "curves",
        f"Total contribution over the fitted weeks had every week's spend been 0 to 2 times what "
        f"it was, with {level} bands; ◆ marks the current spend.",
        no_draws,
    )
    if tables.budget is not None:
        budget = _lead(
            "Spend over the next weeks now and as recommended (maximising the posterior mean "
            f"contribution within the bounds), and the contribution gained, with {level} "
            "intervals. Converged markets only."
        ) + data_table(tables.budget, "budget")
    else:
        budget = empty(context.budget_note or "No budget recommendation in this run.")
    diagnostics = tables.diagnostics
    flagged = [bool(f) for f in diagnostics[FLAG]] if FLAG in diagnostics else None
    diagnostic_body = (
        _lead(
            "Convergence of each market's last attempt and fit quality (in sample and on the "
            "holdout weeks the fit never saw); flagged markets are highlighted: their numbers "
            "above are not trustworthy."
        )
        + data_table(diagnostics, "diagnostics", flagged=flagged)
        if not diagnostics.empty
        else empty("No markets in this run.")
    )
    bodies = {
        "contributions": contributions,
        "roas": roas,
        "curves": curves,
        "budget": budget,
        "diagnostics": diagnostic_body,
    }
    published = f"published {context.published_at}; " if context.published_at else ""
    return document(
        title=f"misterp media-mix report: run {context.run}",
        heading=f"Media-mix report: run {context.run}",
        subtitle=f"{published}{context.health}",
        sections={key: (title, bodies[key]) for key, title in MMM_SECTIONS.items()},
    )


def mmm_index_location(store: ResultStore, run: str) -> str:
    """Where a person opens the run's page: a local path, or the URI of a remote store."""
    return _location(store, f"{_folder(run)}/{REPORT_FOLDER}/{INDEX_FILE}")


def write_mmm_report(store: ResultStore, run: str) -> MMMReportTables:
    """Write ``OUTPUT/mmm/RUN/report/``: the tables as CSV, then ``index.html`` last.

    A stale ``index.html`` is removed first, so a page that exists has its tables beside it.
    """
    folder = f"{_folder(run)}/{REPORT_FOLDER}"
    store.remove(f"{folder}/{INDEX_FILE}")
    tables, context = build_mmm_report(store, run)
    for name, frame in tables.sheets().items():
        store.write_bytes(f"{folder}/{name}.csv", csv_bytes(frame))
    store.write_bytes(f"{folder}/{INDEX_FILE}", render_mmm_page(tables, context).encode())
    logger.info("media-mix run %s: report written to %s", run, mmm_index_location(store, run))
    return tables


def update_mmm_report(store: ResultStore, run: str) -> MMMReportOutcome:
    """Write the run's report after its manifest; never raises, records ``report.json``.

    The run is complete before this runs: a report that fails is logged in one line and
    recorded, and the run stays published.
    """
    started = time.perf_counter()
    outcome: MMMReportOutcome
    try:
        tables = write_mmm_report(store, run)
        location = mmm_index_location(store, run)
        outcome = MMMReportOutcome(
            run=run,
            status="written",
            message=f"report written to {location}",
            index=location,
            link=link_of(store, f"{_folder(run)}/{REPORT_FOLDER}/{INDEX_FILE}"),
            headline=tuple(roas_headline(tables.roas_raw, tables.diagnostics)),
        )
    except Exception as exc:  # the run stays published whatever happens here
        logger.warning(
            "media-mix run %s is published, but its report failed: %s: %s",
            run,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
        outcome = MMMReportOutcome(run=run, status="failed", message=f"{type(exc).__name__}: {exc}")
    outcome = outcome.model_copy(
        update={"seconds": round(time.perf_counter() - started, 3), "at": utc_now()}
    )
    try:
        store.write_bytes(
            f"{_folder(run)}/{REPORT_FILE}", outcome.model_dump_json(indent=2).encode()
        )
    except Exception as exc:  # the outcome is returned either way; one line, traceback at DEBUG
        logger.warning(
            "could not record %s of media-mix run %s (%s: %s)",
            REPORT_FILE,
            run,
            type(exc).__name__,
            exc,
            exc_info=logger.isEnabledFor(logging.DEBUG),
        )
    return outcome
