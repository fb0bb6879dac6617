"""Lift tests calibrate the model: pymc-marketing's lift likelihood is added before sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mmm.config import MMMConfig
from misterp.mmm.model import calibrated_mmm, prepare_market
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.validation import read_mmm_input


@pytest.fixture
def config(tmp_path: Path) -> MMMConfig:
    sim = simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    sim.write(tmp_path / "input")
    dates = sorted(sim.kpi["date"].unique())
    pd.DataFrame(
        {
            "market": ["DE", "DE"],
            "channel": ["tv", "search"],
            "start": [str(pd.Timestamp(dates[10]).date())] * 2,
            "end": [str(pd.Timestamp(dates[14]).date())] * 2,
            "x": [20.0, 10.0],
            "delta_x": [10.0, 5.0],
            "delta_y": [3000.0, 1500.0],
            "sigma": [500.0, 400.0],
        }
    ).to_csv(tmp_path / "input" / "lift_tests.csv", index=False)
    return MMMConfig(
        input=str(tmp_path / "input"), output=str(tmp_path / "out"), controls=["price"]
    )


def test_lift_tests_add_the_lift_likelihood_to_their_market_only(config) -> None:
    data = read_mmm_input(config)
    germany = prepare_market(data, "DE", config)
    france = prepare_market(data, "FR", config)
    assert germany.lift_tests is not None
    assert germany.lift_tests["channel"].tolist() == ["tv", "search"]
    assert france.lift_tests is None

    model = calibrated_mmm(germany, config).model
    lift = model.named_vars["lift_measurements"]
    assert lift in model.observed_RVs
    # delta_y on the model's scale: divided by the KPI's maximum over the fitted weeks
    value = model.rvs_to_values[lift]
    observed = np.asarray(value.data if hasattr(value, "data") else value.eval())
    target_max = germany.fit_frame["kpi"].max()
    np.testing.assert_allclose(observed, np.array([3000.0, 1500.0]) / target_max)

    # without lift tests the model is left for fit() to build, with no lift term
    assert not hasattr(calibrated_mmm(france, config), "model")


def test_lift_tests_change_the_data_hash(config, tmp_path: Path) -> None:
    with_lift = prepare_market(read_mmm_input(config), "DE", config)
    (tmp_path / "input" / "lift_tests.csv").unlink()
    without = prepare_market(read_mmm_input(config), "DE", config)
    assert with_lift.data_hash != without.data_hash  # a re-run refits when lift tests change


def test_a_pooled_model_takes_each_markets_lift_tests_on_that_markets_scale(config) -> None:
    from misterp.mmm.config import Pooling
    from misterp.mmm.model import with_lift_tests
    from misterp.mmm.pooled import build_pooled_mmm, ordered

    pooled_config = config.model_copy(update={"pooling": Pooling.HIERARCHICAL})
    data = read_mmm_input(pooled_config)
    pooled = ordered([prepare_market(data, m, pooled_config) for m in data.markets])
    assert pooled.lift_tests is not None
    assert pooled.lift_tests["market"].tolist() == ["DE", "DE"]

    mmm = with_lift_tests(
        build_pooled_mmm(pooled, pooled_config), pooled.fit_frame, pooled.lift_tests
    )
    lift = mmm.model.named_vars["lift_measurements"]
    value = mmm.model.rvs_to_values[lift]
    observed = np.asarray(value.data if hasattr(value, "data") else value.eval())
    germany_max = pooled.markets[0].fit_frame["kpi"].max()  # per-market scaling
    np.testing.assert_allclose(observed, np.array([3000.0, 1500.0]) / germany_max)
