"""Which media moved awareness? The brand link as the KPI, fitted with the real sampler (slow).

Awareness here is made by media: the simulated weekly KPI of ``misterp.mmm.simulate`` divided by
``AWARENESS_SCALE`` (so 0.3-0.5, a share of adults), published as the tracker would: one
estimate per monthly wave (the mean of the weeks the wave's period holds, where alignment puts
them back) with a 90 % interval of +-``HALF_WIDTH``. The media-mix run reads that trend as its
KPI, fits ``UNCERTAINTY_DRAWS`` series drawn from the intervals and pools them, with each
week's spend its wave's mean weekly spend (``media: wave``, the default).

The bounds were fixed before the first fit: the market converges at the default convergence
thresholds (with chains as long as ``SAMPLER`` says, see there), and the ROAS (awareness
points per unit of spend) of each channel with at least ``MIN_SPEND_SHARE`` of spend is within
``ROAS_TOLERANCE`` of the truth. The tolerance is wider than the sales test's 20 % because
monthly waves hide where in the month the media worked.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from misterp.mmm.brand import week_waves
from misterp.mmm.config import DEFAULT_MMM_SAMPLER, parse_mmm_config
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm

AWARENESS_SCALE = 250_000.0
HALF_WIDTH = 0.01
UNCERTAINTY_DRAWS = 3
ROAS_TOLERANCE = 0.30
MIN_SPEND_SHARE = 0.30
#: The default sampler with the chains the retry ladder gives a short fit (draws x 2, tune x 2).
#: This model mixes slowly: at the default 4 x 1,000 draws the three KPI series reached bulk ESS
#: 379-502 and tail ESS 333-621 (R-hat up to 1.019), so against the thresholds (400, 1.01) the
#: first attempt missed and every run paid for it before the ladder's second one converged. At
#: 4 x 2,000 draws the slowest rate seen (tail, 333 / 4,000 per draw) gives ESS 666, 1.7 times
#: the threshold. The thresholds stay the defaults; two cores, as on the CI machine.
SAMPLER = DEFAULT_MMM_SAMPLER.model_copy(update={"draws": 2000, "tune": 1000, "cores": 2})


def monthly_trend(weekly: pd.DataFrame) -> pd.DataFrame:
    """trends.parquet rows: each month's mean awareness over the weeks whose middle day it holds."""
    last = weekly["date"].max() + pd.Timedelta(days=6)
    months = pd.period_range(weekly["date"].min(), last, freq="M")
    periods = pd.DataFrame(
        {
            "wave": [str(month) for month in months],
            "period_start": [month.start_time for month in months],
            "period_end": [month.end_time.normalize() for month in months],
        }
    )
    position = week_waves(weekly["date"], periods["period_start"], periods["period_end"])
    assert (position >= 0).all()
    wave_of_week = periods["wave"].to_numpy()[position]
    means = weekly.assign(wave=wave_of_week).groupby("wave")["awareness"].mean()
    trend = periods[periods["wave"].isin(means.index)].copy()
    trend["mean"] = trend["wave"].map(means)
    return trend.assign(
        fieldwork_start=pd.NaT,
        fieldwork_end=pd.NaT,
        market="DE",
        question_id="aware_brand01",
        option="yes",
        brand="brand01",
        target_group="all",
        q05=trend["mean"] - HALF_WIDTH,
        q95=trend["mean"] + HALF_WIDTH,
        n=1000,
        status="converged",
    )


@pytest.mark.slow
def test_brand_metric_as_kpi_recovers_what_media_did_to_awareness(tmp_path: Path) -> None:
    simulated = simulate_mmm(20251201, markets=("DE",), n_channels=2, n_weeks=104)
    simulated.write(tmp_path / "input")
    weekly = simulated.kpi.assign(awareness=simulated.kpi["kpi"] / AWARENESS_SCALE)
    monthly_trend(weekly).to_parquet(tmp_path / "trends.parquet")
    config = parse_mmm_config(
        {
            "input": str(tmp_path / "input"),
            "output": str(tmp_path / "out"),
            "controls": ["price"],
            "holdout_weeks": 0,
            "run": "brand",
            "sampler": SAMPLER.model_dump(),
            "brand_link": {
                "trends": str(tmp_path / "trends.parquet"),
                "question_id": "aware_brand01",
                "option": "yes",
                "as": "kpi",
                "uncertainty_draws": UNCERTAINTY_DRAWS,
            },
        }
    )
    outcome = run_mmm(config, workers=1)
    assert outcome.counts.converged == 1, outcome.diagnostics.to_string()
    truth = simulated.roas().assign(roas=lambda t: t["roas"] / AWARENESS_SCALE)
    table = outcome.roas.merge(truth, on=["market", "channel"], suffixes=("", "_true"))
    table = table[table["spend_share_true"] >= MIN_SPEND_SHARE]
    assert len(table) >= 1
    error = (table["roas"] / table["roas_true"] - 1).abs()
    assert (error <= ROAS_TOLERANCE).all(), table.to_string()
