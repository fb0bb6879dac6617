"""The media-mix report: exact small tables and charts, the page (escaping, plotly once, empty
sections say why), and the report step of a run made with the fake sampler (after the manifest,
never unpublishing)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mmm_run_store import RUN, fake_run
from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

from misterp.reporting import mmm_report
from misterp.reporting.mmm_charts import contribution_charts, response_charts, roas_charts
from misterp.reporting.mmm_report import (
    MMM_SECTIONS,
    MMMPageContext,
    MMMReportOutcome,
    render_mmm_page,
)
from misterp.reporting.mmm_tables import MMMReportTables, budget_view, diagnostics_view, roas_view
from misterp.reporting.write import ReportOutcome
from misterp.storage import MANIFEST, ResultStore

HOSTILE_MARKET = "<script>alert('m')</script>"
HOSTILE_CHANNEL = '"><img src=x onerror=alert(1)>'


def _roas(market: str = "DE", channel: str = "tv") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "market": [market, market],
            "channel": [channel, "search"],
            "spend": [300.0, 100.0],
            "spend_share": [0.75, 0.25],
            "contribution": [600.0, 50.0],
            "contribution_lower": [450.0, 20.0],
            "contribution_upper": [750.0, 80.0],
            "roas": [2.0, 0.5],
            "roas_lower": [1.5, 0.2],
            "roas_upper": [2.5, 0.8],
            "marginal_roas": [0.9, 0.4],
            "marginal_roas_lower": [0.6, 0.1],
            "marginal_roas_upper": [1.2, 0.7],
            "status": ["converged", "converged"],
        }
    )


def _contributions(market: str = "DE", channel: str = "tv") -> tuple[pd.DataFrame, pd.DataFrame]:
    dates = pd.to_datetime(["2025-01-06", "2025-01-13"])
    rows = []
    for date in dates:
        for name, mean in ((channel, 10.0), ("search", 5.0), ("baseline", 100.0)):
            rows.append((date, market, name, mean, mean - 1, mean + 1, "converged"))
    contributions = pd.DataFrame(
        rows, columns=["date", "market", "channel", "mean", "lower", "upper", "status"]
    )
    fitted = pd.DataFrame(
        {
            "date": dates,
            "market": market,
            "kpi": [114.0, 116.0],
            "mean": [115.0, 115.0],
            "lower": [112.0, 111.0],
            "upper": [118.0, 119.0],
            "status": "converged",
        }
    )
    return contributions, fitted


def _curves(market: str = "DE", channel: str = "tv") -> pd.DataFrame:
    factors = [0.0, 1.0, 2.0]
    return pd.DataFrame(
        {
            "market": market,
            "channel": [channel] * 3,
            "spend_factor": factors,
            "spend": [0.0, 300.0, 600.0],
            "mean": [0.0, 600.0, 900.0],
            "lower": [0.0, 450.0, 700.0],
            "upper": [0.0, 750.0, 1100.0],
            "status": "converged",
        }
    )


def _diagnostics(market: str = "DE") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "market": [market, "FR"],
            "status": ["converged", "failed"],
            "attempts": [1, 3],
            "r_hat_max": [1.002, None],
            "ess_bulk_min": [900.0, None],
            "ess_tail_min": [800.0, None],
            "divergences": [0, None],
            "r2": [0.95, None],
            "mape": [0.05, None],
            "holdout_mape": [0.08, None],
            "seconds": [30.0, 90.0],
        }
    )


def _tables(market: str = "DE", channel: str = "tv", *, budget: bool = False) -> MMMReportTables:
    contributions, fitted = _contributions(market, channel)
    roas = _roas(market, channel)
    budget_frame = None
    if budget:
        budget_frame = budget_view(
            pd.DataFrame(
                {
                    "market": [market],
                    "channel": [channel],
                    "weeks": [4],
                    "current_spend": [0.0],
                    "recommended_spend": [10.0],
                    "current_contribution": [0.0],
                    "recommended_contribution": [5.0],
                    "gain": [5.0],
                    "gain_lower": [1.0],
                    "gain_upper": [9.0],
                    "status": ["converged"],
                }
            )
        )
    return MMMReportTables(
        roas=roas_view(roas),
        budget=budget_frame,
        diagnostics=diagnostics_view(_diagnostics(market)),
        contributions=contributions,
        fitted=fitted,
        response_curves=_curves(market, channel),
        roas_raw=roas,
    )


CONTEXT = MMMPageContext(run="r1", published_at="2026-01-01", health="ok", interval=0.9)


# --- tables ------------------------------------------------------------------------------------


def test_budget_change_is_empty_without_current_spend_and_diagnostics_flag_failures() -> None:
    tables = _tables(budget=True)
    assert tables.budget is not None
    row = tables.budget.iloc[0]
    assert np.isnan(row["Change %"])  # from 0: no percentage, not inf
    assert row["Recommended spend"] == 10.0
    diagnostics = tables.diagnostics
    assert diagnostics["Flag"].tolist() == ["", "failed: no draws"]
    assert diagnostics.loc[0, ["R-hat max", "MAPE %", "Holdout MAPE %"]].tolist() == [
        1.002,
        5.0,
        8.0,
    ]
    assert diagnostics["R-hat max"].isna().tolist() == [False, True]
    assert set(tables.sheets()) == {"roas", "diagnostics", "budget"}
    assert set(_tables().sheets()) == {"roas", "diagnostics"}


# --- charts ------------------------------------------------------------------------------------


def test_contributions_stack_baseline_first_and_draw_the_total_with_its_band() -> None:
    contributions, fitted = _contributions()
    (chart,) = contribution_charts(contributions, fitted)
    traces = chart.figure.data
    stacked = [t for t in traces if t.stackgroup == "contributions"]
    assert [t.name for t in stacked] == ["baseline", "tv", "search"]
    assert list(stacked[0].y) == [100.0, 100.0]
    band = next(t for t in traces if t.fill == "toself")
    assert list(band.y) == [118.0, 119.0, 111.0, 112.0]  # upper, then lower reversed
    kpi = next(t for t in traces if t.name == "KPI")
    assert list(kpi.y) == [114.0, 116.0]
    # without fitted.parquet (older runs): the stack alone
    (alone,) = contribution_charts(contributions, None)
    assert len(alone.figure.data) == 3


def test_roas_chart_draws_each_interval_as_error_bars() -> None:
    (chart,) = roas_charts(_roas())
    roas, marginal = chart.figure.data
    assert list(roas.x) == [2.0, 0.5]
    assert list(roas.error_x.array) == pytest.approx([0.5, 0.3])
    assert list(roas.error_x.arrayminus) == pytest.approx([0.5, 0.3])
    assert list(marginal.x) == [0.9, 0.4]
    assert list(marginal.error_x.array) == pytest.approx([0.3, 0.3])


def test_response_curve_marks_the_current_spend() -> None:
    (chart,) = response_charts(_curves())
    band, line, now = chart.figure.data
    assert list(line.x) == [0.0, 300.0, 600.0]
    assert list(band.y) == [0.0, 750.0, 1100.0, 700.0, 450.0, 0.0]
    assert (list(now.x), list(now.y)) == ([300.0], [600.0])
    assert now.marker.symbol == "diamond"


# --- the page ----------------------------------------------------------------------------------


def test_page_escapes_hostile_names_and_inlines_plotly_once() -> None:
    page = render_mmm_page(_tables(HOSTILE_MARKET, HOSTILE_CHANNEL, budget=True), CONTEXT)
    assert HOSTILE_MARKET not in page
    assert HOSTILE_CHANNEL not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&#x27;m&#x27;)&lt;/script&gt;" in page  # the tables
    assert page.count(get_plotlyjs()) == 1
    assert page.count("<script") == 1 + 3  # plotly.js, then one call per chart
    assert [s for s in MMM_SECTIONS if f'<section id="{s}">' in page] == list(MMM_SECTIONS)
    # flagged markets are highlighted in the diagnostics table
    assert page.count('<tr class="flagged">') == 1


def test_sections_without_data_say_why() -> None:
    empty = MMMReportTables(
        roas=pd.DataFrame(),
        budget=None,
        diagnostics=diagnostics_view(_diagnostics().iloc[1:]),
    )
    context = MMMPageContext(
        run="r1",
        published_at=None,
        health="1 failed",
        interval=0.9,
        budget_note="No budget recommendation: the run's config has no budget section.",
    )
    page = render_mmm_page(empty, context)
    assert page.count("No market of this run has draws") == 3
    assert "the run&#x27;s config has no budget section" in page
    assert "figure" not in page.split("</head>")[1]


# --- the report step of a run ------------------------------------------------------------------


class RecordingStore(ResultStore):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[str] = []

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.writes.append(relative)
        super().write_bytes(relative, data)


def test_a_run_writes_its_report_after_the_manifest(tmp_path: Path) -> None:
    store = RecordingStore(str(tmp_path / "out"))
    outcome = fake_run(tmp_path, store=store)
    folder = f"mmm/{RUN}"
    after = store.writes[store.writes.index(f"{folder}/{MANIFEST}") + 1 :]
    assert after[-1] == f"{folder}/lease.json"  # the run's lease is released last
    assert after[:-1] == [
        f"{folder}/report/roas.csv",
        f"{folder}/report/diagnostics.csv",
        f"{folder}/report/budget.csv",
        f"{folder}/report/index.html",
        f"{folder}/report.json",
    ]
    assert outcome.report is not None
    assert outcome.report.status == "written"
    index = tmp_path / "out" / folder / "report" / "index.html"
    assert outcome.report.index == str(index)
    record = MMMReportOutcome.model_validate_json((index.parent.parent / "report.json").read_text())
    assert record.status == "written"
    page = index.read_text()
    assert page.count('<tr class="flagged">') == 1  # FR did not converge
    csv = pd.read_csv(index.parent / "roas.csv")
    assert set(csv["Market"]) == {"DE", "FR"}


def test_a_failing_report_never_unpublishes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> str:
        raise RuntimeError("plotly broke")

    monkeypatch.setattr(mmm_report, "render_mmm_page", broken)
    with caplog.at_level(logging.WARNING, logger="misterp.reporting.mmm_report"):
        outcome = fake_run(tmp_path)
    run = tmp_path / "out" / "mmm" / RUN
    assert (run / MANIFEST).exists()
    assert not (run / "report" / "index.html").exists()
    assert outcome.report is not None
    assert outcome.report.status == "failed"
    assert outcome.report.message == "RuntimeError: plotly broke"
    assert "failed" in (run / "report.json").read_text()
    lines = [r for r in caplog.records if r.name == "misterp.reporting.mmm_report"]
    assert len(lines) == 1
    assert "is published, but its report failed" in lines[0].getMessage()


def test_a_report_step_is_recorded_alike_for_a_run_and_a_wave(tmp_path: Path) -> None:
    outcome = fake_run(tmp_path, diverging=())
    assert outcome.report is not None
    stored = json.loads((tmp_path / "out" / "mmm" / RUN / "report.json").read_text())
    # the ROAS headline is for the orchestrator's UI only, as a wave's headline is
    assert set(stored) == {"run", "status", "message", "index", "link", "seconds", "at"}
    assert [(row["market"], row["status"]) for row in outcome.report.headline] == [
        ("DE", "converged"),
        ("FR", "converged"),
    ]
    wave = ReportOutcome(wave="2026-11", status="failed", message="RuntimeError: x")
    assert set(wave.model_dump(mode="json")) - {"wave"} == set(stored) - {"run"}
