"""run_mmm end to end with an injected sampler that samples nothing: outputs, records, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mmm.config import MMMConfig, MMMConvergence
from misterp.mmm.model import SWEEP_FACTORS, MarketInput, layout_for
from misterp.mmm.outputs import MMMFitRecord, MMMManifest
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm
from misterp.records import ConvergenceReport
from misterp.storage import MANIFEST, ResultStore

#: Markets the fake sampler was asked to fit, in order (workers=1 runs in this process).
CALLS: list[str] = []
#: Markets whose fake fit keeps diverging.
DIVERGING: set[str] = set()


def fake_functions(market: MarketInput, config: MMMConfig):
    """Each channel contributes exactly 1.0 a week in every draw; baseline 100.0."""
    layout = layout_for(market, config)
    n_channels = len(market.channels)

    def sample(settings):
        CALLS.append(market.market)
        return settings

    def extract(posterior, settings):
        draws = 4
        contributions = np.ones((draws, layout.n_dates, n_channels + 1))
        contributions[..., -1] = 100.0
        sweep = np.broadcast_to(
            np.asarray(SWEEP_FACTORS)[None, :, None] * layout.n_dates,
            (draws, len(SWEEP_FACTORS), n_channels),
        )
        adstock = np.full((draws, n_channels, layout.l_max), 1.0 / layout.l_max)
        holdout = np.full((draws, layout.n_holdout), 100.0 + n_channels)
        return layout.pack(
            {"contributions": contributions, "sweep": sweep, "adstock": adstock, "holdout": holdout}
        )

    def diagnose(posterior, seconds):
        divergences = 3 if market.market in DIVERGING else 0
        return ConvergenceReport(
            r_hat_max=1.001,
            ess_bulk_min=1500,
            ess_tail_min=1200,
            divergences=divergences,
            bfmi_min=0.9,
            chains=4,
            draws=1000,
            seconds=seconds,
        )

    return sample, extract, diagnose


class RecordingStore(ResultStore):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[str] = []

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.writes.append(relative)
        super().write_bytes(relative, data)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    DIVERGING.clear()


@pytest.fixture
def config(tmp_path: Path) -> MMMConfig:
    sim = simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    sim.write(tmp_path / "input")
    return MMMConfig(
        input=str(tmp_path / "input"), output=str(tmp_path / "out"), controls=["price"], run="r1"
    )


def test_run_publishes_every_table_and_the_manifest_last(config) -> None:
    store = RecordingStore(config.output)
    outcome = run_mmm(config, store, workers=1, functions=fake_functions)
    # the report comes after the manifest (a failing one never unpublishes the run)
    # the staged inputs come before the fits, the run's lease is taken first and released last
    assert store.writes[0] == store.writes[-1] == "mmm/r1/lease.json"
    writes = [w for w in store.writes if "/staged/" not in w and w != "mmm/r1/lease.json"]
    published = writes.index(f"mmm/r1/{MANIFEST}")
    assert {Path(w).name for w in writes[:published]} == {
        "contributions.parquet",
        "roas.parquet",
        "response_curves.parquet",
        "adstock.parquet",
        "fitted.parquet",
        "diagnostics.parquet",
        "health.md",
    }
    assert writes[published + 1 :][-2:] == ["mmm/r1/report/index.html", "mmm/r1/report.json"]
    manifest = MMMManifest.from_json(store.read_bytes(f"mmm/r1/{MANIFEST}"), "manifest")
    assert manifest.healthy
    assert manifest.counts.converged == 2
    assert {m.market for m in manifest.markets} == {"DE", "FR"}
    assert outcome.headline == "media-mix run r1: all 2 models converged"
    for name, sha in manifest.sha256.items():
        import hashlib

        assert hashlib.sha256(store.read_bytes(f"mmm/r1/{name}")).hexdigest() == sha
    assert store.exists("mmm/r1/fits/DE.json")
    assert store.exists("mmm/r1/fits/DE.npy")


def test_roas_is_summed_contribution_over_spend_of_the_fitted_weeks(config) -> None:
    outcome = run_mmm(config, workers=1, functions=fake_functions)
    spend = pd.read_csv(Path(config.input) / "media.csv")
    fitted_weeks = sorted(spend["date"].unique())[: 80 - config.holdout_weeks]
    fitted = spend[spend["date"].isin(fitted_weeks)].groupby(["market", "channel"])["spend"].sum()
    for row in outcome.roas.itertuples():
        expected = len(fitted_weeks) / fitted[(row.market, row.channel)]  # 1.0 a week
        assert row.roas == pytest.approx(expected)
        assert row.roas_lower == pytest.approx(expected)
        # sweep contributions are factor * n_dates: the slope per unit spend is n_dates / spend
        assert row.marginal_roas == pytest.approx(expected)


def test_contributions_include_the_baseline_and_diagnostics_the_fit_quality(config) -> None:
    run_mmm(config, workers=1, functions=fake_functions)
    store = ResultStore(config.output)
    contributions = store.read_parquet("mmm/r1/contributions.parquet")
    assert set(contributions["channel"]) == {"tv", "search", "baseline"}
    assert contributions.loc[contributions["channel"] == "baseline", "mean"].eq(100.0).all()
    assert contributions["date"].nunique() == 80 - config.holdout_weeks
    curves = store.read_parquet("mmm/r1/response_curves.parquet")
    assert sorted(curves["spend_factor"].unique()) == sorted(SWEEP_FACTORS)
    adstock = store.read_parquet("mmm/r1/adstock.parquet")
    assert adstock.groupby(["market", "channel"])["mean"].sum().round(12).eq(1.0).all()
    record = MMMFitRecord.from_json(store.read_bytes("mmm/r1/fits/DE.json"), "DE.json")
    assert record.quality is not None
    assert np.isfinite(record.quality.holdout_mape)
    assert (record.n_weeks, record.holdout_weeks) == (68, 12)


def test_not_converged_market_is_retried_then_published_flagged(config) -> None:
    DIVERGING.add("FR")
    outcome = run_mmm(config, workers=1, functions=fake_functions)
    assert CALLS.count("FR") == config.retry.max_attempts
    assert CALLS.count("DE") == 1
    assert not outcome.manifest.healthy
    assert outcome.counts.not_converged == 1
    fr = outcome.roas[outcome.roas["market"] == "FR"]
    assert fr["status"].eq("not_converged").all()
    attempts = next(m for m in outcome.manifest.markets if m.market == "FR").attempts
    assert [a.sampler.target_accept for a in attempts] == [0.9, 0.99, 0.995]  # the retry ladder


def test_rerun_reuses_converged_markets_and_refits_changed_data(config) -> None:
    run_mmm(config, workers=1, functions=fake_functions)
    assert CALLS == ["DE", "FR"]
    run_mmm(config, workers=1, functions=fake_functions)
    assert CALLS == ["DE", "FR"]  # nothing refitted
    kpi = pd.read_csv(Path(config.input) / "kpi.csv")
    kpi.loc[kpi["market"] == "FR", "kpi"] += 1.0
    kpi.to_csv(Path(config.input) / "kpi.csv", index=False)
    run_mmm(config, workers=1, functions=fake_functions)
    assert CALLS == ["DE", "FR", "FR"]
    run_mmm(config, workers=1, functions=fake_functions, refit_all=True)
    assert CALLS == ["DE", "FR", "FR", "DE", "FR"]


def test_stricter_thresholds_refit_a_converged_market(config) -> None:
    run_mmm(config, workers=1, functions=fake_functions)
    stricter = config.model_copy(update={"convergence": MMMConvergence(ess_bulk_min=500)})
    run_mmm(stricter, workers=1, functions=fake_functions)
    assert CALLS == ["DE", "FR", "DE", "FR"]


def test_markets_in_worker_processes_give_the_same_tables(config) -> None:
    inline = run_mmm(config, workers=1, functions=fake_functions).roas
    again = config.model_copy(update={"run": "r2"})
    parallel = run_mmm(again, workers=2, functions=fake_functions).roas
    pd.testing.assert_frame_equal(inline, parallel)


def test_default_run_id_is_the_last_week_of_the_data(config) -> None:
    unnamed = config.model_copy(update={"run": None})
    outcome = run_mmm(unnamed, workers=1, functions=fake_functions)
    last = pd.read_csv(Path(config.input) / "kpi.csv")["date"].max()
    assert outcome.run == last
    assert (
        json.loads(ResultStore(config.output).read_bytes(f"mmm/{last}/{MANIFEST}"))["run"] == last
    )


def test_health_report_lists_the_flagged_market_with_why_before_the_manifest(config) -> None:
    DIVERGING.add("FR")
    store = RecordingStore(config.output)
    outcome = run_mmm(config, store, workers=1, functions=fake_functions)
    assert store.writes.index("mmm/r1/health.md") < store.writes.index(f"mmm/r1/{MANIFEST}")
    page = store.read_bytes("mmm/r1/health.md").decode()
    assert page.startswith("# Media-mix run r1: NEEDS ATTENTION")
    problems = page.split("## Models that need attention")[1].split("## Slowest fits")[0]
    assert "`FR` | not_converged | 3 |" in problems
    assert "3 divergences" in problems
    assert "`DE`" not in problems
    assert "`misterp mmm run --config CONFIG` refits only these" in page
    assert outcome.health.headline() == (
        "media-mix run r1: 1 not converged, 1 of 2 converged; their estimates are flagged"
    )
