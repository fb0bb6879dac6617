"""Recovery with the real sampler on simulated data in raw units (slow: real MCMC).

The bounds come from the issue and were fixed before any fit was run: the market converges
with the default settings, and the estimated ROAS of every channel with a non-trivial spend
share (10 % or more of its market's spend) lies within 20 % of the true ROAS over the same
fitted weeks. Spend is in thousands and the KPI around 100,000 a week, so this is also the
raw-scale trap: it passes only because scaling happens inside the pipeline.

One market (DE) is fitted: markets are fitted independently and the simulator draws each
market's data in turn, so DE's data, fit and checks are exactly what they were when FR was
simulated and fitted after it. FR repeated the same checks on a second simulated market at
twice the run time; several markets in one run are covered by the fake-sampler run tests.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from misterp.mmm.config import DEFAULT_MMM_SAMPLER, MMMConfig
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm

#: From the issue: ROAS within +-20 % of the truth ...
ROAS_TOLERANCE = 0.20
#: ... for channels with a non-trivial share of their market's spend.
MIN_SPEND_SHARE = 0.10


@pytest.mark.slow
def test_default_fit_recovers_true_roas_from_raw_units(tmp_path: Path) -> None:
    weeks = 130
    simulated = simulate_mmm(20250601, markets=("DE",), n_channels=3, n_weeks=weeks)
    simulated.write(tmp_path / "input")
    config = MMMConfig(
        input=str(tmp_path / "input"),
        output=str(tmp_path / "out"),
        controls=["price"],
        # the default sampler, with the chains spread over two cores as on the CI machine
        sampler=DEFAULT_MMM_SAMPLER.model_copy(update={"cores": 2}),
    )
    outcome = run_mmm(config, workers=1)

    assert outcome.diagnostics["status"].eq("converged").all(), outcome.diagnostics
    fitted = sorted(simulated.kpi["date"].unique())[: weeks - config.holdout_weeks]
    truth = simulated.roas([pd.Timestamp(d) for d in fitted])
    table = outcome.roas.merge(truth, on=["market", "channel"], suffixes=("", "_true"))
    assert len(table) == 3
    checked = table[table["spend_share"] >= MIN_SPEND_SHARE]
    error = (checked["roas"] / checked["roas_true"] - 1).abs()
    assert (error <= ROAS_TOLERANCE).all(), checked[["market", "channel", "roas", "roas_true"]]
