"""pooling: hierarchical, one model over all markets: priors, run, records, refusals.

The run tests inject a pooled fake that samples nothing (each market's fake draws side by side),
so they check the plumbing; the hierarchy itself is checked on the built PyMC model at a point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.mmm.test_mmm_run import CALLS, DIVERGING, fake_functions

from misterp.errors import ConfigError
from misterp.mmm.config import MMMConfig, Pooling, parse_mmm_config
from misterp.mmm.model import prepare_market
from misterp.mmm.outputs import MMMFitRecord
from misterp.mmm.pooled import (
    POOLED_KEY,
    PooledInput,
    build_pooled_mmm,
    ordered,
    split_pooled_draws,
)
from misterp.mmm.run import settings_hash
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.staging import stage_run
from misterp.mmm.validation import read_mmm_input
from misterp.mmm.worker import (
    current_records,
    fit_staged_pooled,
    markets_to_fit,
    record_lost_market,
)
from misterp.pipeline.mmm import run_mmm
from misterp.status import FitStatus
from misterp.storage import ResultStore

#: Market sets the pooled fake was asked to fit, in order.
POOLED_CALLS: list[tuple[str, ...]] = []


def pooled_fake(pooled: PooledInput, config: MMMConfig):
    """Every market's fake fit at once: draws side by side, the worst diagnostics."""
    parts = [fake_functions(market, config) for market in pooled.markets]

    def sample(settings):
        POOLED_CALLS.append(pooled.names)
        return settings

    def extract(posterior, settings):
        return np.concatenate([part[1](posterior, settings) for part in parts], axis=1)

    def diagnose(posterior, seconds):
        reports = [part[2](posterior, seconds) for part in parts]
        return max(reports, key=lambda report: report.divergences)

    return sample, extract, diagnose


@pytest.fixture(autouse=True)
def _reset() -> None:
    POOLED_CALLS.clear()
    CALLS.clear()
    DIVERGING.clear()


@pytest.fixture
def config(tmp_path: Path) -> MMMConfig:
    sim = simulate_mmm(5, markets=("DE", "FR", "IT"), n_channels=2, n_weeks=80)
    sim.write(tmp_path / "input")
    return MMMConfig(
        input=str(tmp_path / "input"),
        output=str(tmp_path / "out"),
        controls=["price"],
        run="r1",
        pooling="hierarchical",
    )


def test_pooled_run_fits_all_markets_once_and_publishes_the_same_tables(config) -> None:
    pooled = run_mmm(config, workers=1, pooled_functions=pooled_fake, functions=fake_functions)
    assert POOLED_CALLS == [("DE", "FR", "IT")]
    assert CALLS == []  # no market was fitted alone
    independent = config.model_copy(update={"pooling": Pooling.INDEPENDENT, "run": "r2"})
    alone = run_mmm(independent, workers=1, functions=fake_functions)
    pd.testing.assert_frame_equal(
        pooled.roas.drop(columns="status"), alone.roas.drop(columns="status")
    )
    records = {m.market: m for m in pooled.manifest.markets}
    assert records["FR"].pooled_with == ("DE", "IT")
    assert records["DE"].data_hash == records["IT"].data_hash  # one hash over every market
    assert len({r.fit_id for r in records.values()}) == 3
    assert pooled.manifest.healthy


def test_a_diverging_pooled_fit_retries_and_flags_every_market(config) -> None:
    DIVERGING.add("IT")
    outcome = run_mmm(config, workers=1, pooled_functions=pooled_fake)
    assert len(POOLED_CALLS) == config.retry.max_attempts
    assert outcome.counts.not_converged == 3
    assert outcome.roas["status"].eq("not_converged").all()


def test_pooled_rerun_reuses_the_fit_and_new_data_in_one_market_refits_all(config) -> None:
    run_mmm(config, workers=1, pooled_functions=pooled_fake)
    run_mmm(config, workers=1, pooled_functions=pooled_fake)
    assert len(POOLED_CALLS) == 1
    kpi = pd.read_csv(Path(config.input) / "kpi.csv")
    kpi.loc[kpi["market"] == "FR", "kpi"] += 1.0
    kpi.to_csv(Path(config.input) / "kpi.csv", index=False)
    run_mmm(config, workers=1, pooled_functions=pooled_fake)
    assert POOLED_CALLS == [("DE", "FR", "IT")] * 2


def test_markets_with_different_weeks_are_refused_before_anything_is_written(config) -> None:
    for name in ("kpi", "media", "controls"):
        path = Path(config.input) / f"{name}.csv"
        frame = pd.read_csv(path)
        first = frame["date"].min()
        frame[~((frame["market"] == "IT") & (frame["date"] == first))].to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"market IT has weeks .* same weeks in every market"):
        run_mmm(config, workers=1, pooled_functions=pooled_fake)
    assert POOLED_CALLS == []
    assert not ResultStore(config.output).list("mmm/r1")


def test_pooling_leaves_independent_fits_current_and_is_in_the_pooled_hash(config) -> None:
    independent = config.model_copy(update={"pooling": Pooling.INDEPENDENT})
    settings = independent.model_settings()
    assert "pooling" not in settings
    assert "market_sigma" not in settings["priors"]
    wider = independent.model_copy(
        update={"priors": independent.priors.model_copy(update={"market_sigma": 1.0})}
    )
    assert settings_hash(wider) == settings_hash(independent)  # unused while independent
    assert config.model_settings()["pooling"] == "hierarchical"
    pooled_wider = config.model_copy(update={"priors": wider.priors})
    assert settings_hash(pooled_wider) != settings_hash(config)


def test_budget_with_pooling_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigError, match="budget is not available with pooling: hierarchical"):
        parse_mmm_config(
            {"input": "in", "output": "out", "pooling": "hierarchical", "budget": {"weeks": 4}}
        )
    with pytest.raises(ConfigError, match="pooling"):
        parse_mmm_config({"input": "in", "output": "out", "pooling": "partial"})


def test_split_pooled_draws_gives_each_market_its_block() -> None:
    draws = np.arange(12.0).reshape(2, 6)
    de, _, it = split_pooled_draws(draws, 3)
    assert de.tolist() == [[0.0, 1.0], [6.0, 7.0]]
    assert it.tolist() == [[4.0, 5.0], [10.0, 11.0]]
    with pytest.raises(ValueError, match="equal division"):
        split_pooled_draws(draws, 4)


def test_the_built_model_draws_each_channel_around_its_pooled_mean(config) -> None:
    """At a chosen point, saturation_beta[m, c] = exp(mu_c + tau * z[m, c]) and the
    carry-over is sigmoid of the same form: the markets share mu_c and tau."""
    data = read_mmm_input(config)
    pooled = ordered([prepare_market(data, market, config) for market in data.markets])
    mmm = build_pooled_mmm(pooled, config)
    fit = pooled.fit_frame
    mmm.build_model(fit.drop(columns=["kpi"]), fit["kpi"])
    model = mmm.model
    free = {rv.name for rv in model.free_RVs}
    for name in ("saturation_beta", "saturation_lam", "adstock_alpha"):
        assert {f"{name}_raw_mu", f"{name}_raw_sigma", f"{name}_raw_offset"} <= free
    point = model.initial_point()
    rng = np.random.default_rng(1)
    shapes = {name: np.shape(value) for name, value in point.items()}
    mu = rng.normal(size=shapes["saturation_beta_raw_mu"])
    z = rng.normal(size=shapes["saturation_beta_raw_offset"])
    tau = 0.3
    point["saturation_beta_raw_mu"] = mu
    point["saturation_beta_raw_offset"] = z
    point["saturation_beta_raw_sigma_log__"] = np.log(tau)
    (expression,) = model.replace_rvs_by_values([model["saturation_beta"]])
    values = {var.name: var for var in model.value_vars}
    needed = ("saturation_beta_raw_mu", "saturation_beta_raw_offset")
    beta = expression.eval(
        {values[name]: point[name] for name in (*needed, "saturation_beta_raw_sigma_log__")}
    )
    assert beta.shape == (3, 2)  # market x channel
    np.testing.assert_allclose(beta, np.exp(mu[None, :] + tau * z), rtol=1e-10)
    # per-market scaling: each market's KPI divided by its own maximum
    scales = model["target_scale"].eval()
    expected = fit.groupby("market", sort=False)["kpi"].max().to_numpy()
    np.testing.assert_allclose(scales, expected)


def test_pooled_record_round_trips(config) -> None:
    run_mmm(config, workers=1, pooled_functions=pooled_fake)
    store = ResultStore(config.output)
    record = MMMFitRecord.from_json(store.read_bytes("mmm/r1/fits/IT.json"), "IT.json")
    assert record.pooled_with == ("DE", "FR")


def test_a_staged_pooled_run_is_one_fit_key_and_its_records_are_current(config) -> None:
    data = read_mmm_input(config)
    inputs = {market: prepare_market(data, market, config) for market in data.markets}
    store = ResultStore(config.output)
    staged = stage_run(store, "r1", config, inputs)
    assert markets_to_fit(store, staged, config) == [POOLED_KEY]

    records = fit_staged_pooled(config.output, "r1", functions=pooled_fake)

    assert POOLED_CALLS == [("DE", "FR", "IT")]
    assert set(records) == {"DE", "FR", "IT"}
    assert markets_to_fit(store, staged, config) == []  # all three reusable
    assert all(record is not None for record in current_records(store, staged, config).values())
    # a lost pooled fit is recorded failed per market, and those records count as current
    lost = record_lost_market(config.output, "r1", "FR", "pod lost")
    assert lost.status is FitStatus.FAILED
    assert current_records(store, staged, config)["FR"] == lost
    assert markets_to_fit(store, staged, config) == [POOLED_KEY]
