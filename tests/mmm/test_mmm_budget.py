"""Budget recommendation: the table from stored draws (fake sampler), and the optimiser (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.mmm.test_mmm_run import DIVERGING, fake_functions

from misterp.config import RetryPolicy, SamplerConfig
from misterp.errors import ConfigError
from misterp.mmm.budget import BUDGET_FILE, current_spend, weekly_bounds
from misterp.mmm.config import BudgetConfig, MMMConfig, MMMConvergence, parse_mmm_config
from misterp.mmm.model import MarketInput, layout_for
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm
from misterp.storage import ResultStore


def budget_functions(market: MarketInput, config: MMMConfig):
    """The run tests' fake fit, plus advice: spend 1 -> 2 a week, contribution 10 -> 12 (+-1)."""
    plain = config.model_copy(update={"budget": None})
    sample, extract, diagnose = fake_functions(market, plain)
    layout = layout_for(market, config)
    n = len(market.channels)

    def extract_with_budget(posterior, settings):
        parts = layout_for(market, plain).unpack(extract(posterior, settings))
        spread = np.repeat(np.array([-1.0, -1.0, 1.0, 1.0])[:, None], n, axis=1)  # 4 draws
        parts["budget"] = np.stack(
            [np.ones((4, n)), 2 * np.ones((4, n)), 10 + spread, 12 + spread], axis=1
        )
        return layout.pack(parts)

    return sample, extract_with_budget, diagnose


@pytest.fixture
def config(tmp_path: Path) -> MMMConfig:
    simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80).write(tmp_path / "input")
    return MMMConfig(
        input=str(tmp_path / "input"),
        output=str(tmp_path / "out"),
        controls=["price"],
        run="r1",
        budget=BudgetConfig(weeks=4),
    )


def test_budget_table_lists_converged_markets_with_spend_over_the_period(config) -> None:
    DIVERGING.clear()
    DIVERGING.add("FR")
    try:
        outcome = run_mmm(config, workers=1, functions=budget_functions)
    finally:
        DIVERGING.clear()
    table = ResultStore(config.output).read_parquet(f"mmm/r1/{BUDGET_FILE}")
    assert set(table["market"]) == {"DE"}  # FR did not converge: no advice from it
    assert table["channel"].tolist() == ["tv", "search"]
    assert table["current_spend"].tolist() == [4.0, 4.0]  # 1 a week x 4 weeks
    assert table["recommended_spend"].tolist() == [8.0, 8.0]
    assert table["recommended_contribution"].tolist() == [12.0, 12.0]
    assert table["gain"].tolist() == [2.0, 2.0]
    assert table["current_contribution_lower"].tolist() == [9.0, 9.0]  # 5 % of (9, 9, 11, 11)
    assert outcome.manifest.files["budget"] == BUDGET_FILE
    assert BUDGET_FILE in outcome.manifest.sha256


def test_current_spend_and_bounds_follow_the_config() -> None:
    frame = pd.DataFrame({"tv": [100.0, 4.0, 6.0], "search": [1.0, 2.0, 2.0]})
    budget = BudgetConfig(reference_weeks=2, relative_bounds=(0.5, 1.5), bounds={"tv": (0, 9)})
    current = current_spend(frame, ["tv", "search"], budget)
    assert current.tolist() == [5.0, 2.0]
    assert weekly_bounds(current, budget) == {"tv": (0, 9), "search": (1.0, 3.0)}
    with pytest.raises(ConfigError, match="0 <= min <= max"):
        parse_mmm_config({"input": "i", "output": "o", "budget": {"relative_bounds": [2, 1]}})


@pytest.mark.slow
def test_optimiser_advice_respects_bounds_and_total_and_does_not_lose(tmp_path: Path) -> None:
    simulate_mmm(7, markets=("DE",), n_channels=2, n_weeks=80).write(tmp_path / "input")
    config = MMMConfig(
        input=str(tmp_path / "input"),
        output=str(tmp_path / "out"),
        run="r1",
        yearly_seasonality=0,
        holdout_weeks=0,
        budget=BudgetConfig(weeks=4, relative_bounds=(0.5, 1.5)),
        # plumbing, not accuracy: a short chain is enough to run the optimiser on a posterior
        sampler=SamplerConfig(draws=100, tune=100, chains=2, cores=2),
        convergence=MMMConvergence(
            r_hat_max=1.5, ess_bulk_min=0, ess_tail_min=0, divergences_max=1000
        ),
        retry=RetryPolicy(max_attempts=1),
    )
    run_mmm(config, workers=1)
    table = ResultStore(config.output).read_parquet(f"mmm/r1/{BUDGET_FILE}")
    assert len(table) == 2
    current, advised = table["current_spend"], table["recommended_spend"]
    assert advised.sum() == pytest.approx(current.sum(), rel=1e-4)  # total: current x weeks
    assert (advised >= 0.5 * current - 1e-6).all()
    assert (advised <= 1.5 * current + 1e-6).all()
    # the optimiser maximises the posterior mean contribution, so it cannot do worse
    assert table["recommended_contribution"].sum() >= table["current_contribution"].sum() - 1e-6
    assert (table["current_contribution_lower"] <= table["current_contribution"]).all()
