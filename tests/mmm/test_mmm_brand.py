"""The brand link: the tracker's trend aligned to media weeks, checked, and its error propagated.

No MCMC: alignment and validation are exact small cases on a trends.parquet built here, and the
uncertainty claim (a trend with wider intervals gives wider ROAS intervals) is shown through the
pooled fits with an injected sampler whose channel contributions follow the KPI it is given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.config import SamplerConfig
from misterp.errors import ConfigError
from misterp.mmm.brand import interval_sd, trend_draws, week_waves
from misterp.mmm.config import BRAND_CONTROL, MMMConfig, parse_mmm_config
from misterp.mmm.model import SWEEP_FACTORS, MarketInput, layout_for, prepare_market
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.validation import InputValidationError, read_mmm_input
from misterp.pipeline.mmm import run_mmm
from misterp.records import ConvergenceReport

MONTHS = pd.period_range("2023-01", "2024-07", freq="M")  # the simulated weeks' months
CALLS: list[str] = []


def trends_frame(half_width: float = 0.02, months=MONTHS, markets=("DE", "FR")) -> pd.DataFrame:
    """Awareness 0.30 + 0.01 per month (DE) or 0.50 + 0.01 per month (FR), +-half_width."""
    rows = []
    for market, level in zip(markets, (0.30, 0.50), strict=False):
        for i, month in enumerate(months):
            mean = level + 0.01 * i
            for option in ("yes", "no"):
                rows.append(
                    {
                        "wave": str(month),
                        "period_start": month.start_time,
                        "period_end": month.end_time.normalize(),
                        "fieldwork_start": pd.NaT,
                        "fieldwork_end": pd.NaT,
                        "market": market,
                        "question_id": "aware_brand01",
                        "option": option,
                        "brand": "brand01",
                        "target_group": "all",
                        "mean": mean,
                        "q05": mean - half_width,
                        "q95": mean + half_width,
                        "n": 1000,
                        "status": "converged",
                    }
                )
    return pd.DataFrame(rows)


def link(trends: Path, role: str = "kpi", **extra: object) -> dict[str, object]:
    return {
        "trends": str(trends),
        "question_id": "aware_brand01",
        "option": "yes",
        "as": role,
        **extra,
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    sim = simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    sim.write(tmp_path / "input")
    trends_frame().to_parquet(tmp_path / "trends.parquet")
    return tmp_path


def config(folder: Path, **brand: object) -> MMMConfig:
    return parse_mmm_config(
        {
            "input": str(folder / "input"),
            "output": str(folder / "out"),
            "controls": ["price"],
            "run": "r1",
            "brand_link": link(folder / "trends.parquet", **brand),  # type: ignore[arg-type]
        }
    )


def problems(cfg: MMMConfig) -> list[str]:
    with pytest.raises(InputValidationError) as caught:
        read_mmm_input(cfg)
    return [str(problem) for problem in caught.value.report]


def test_a_week_takes_the_wave_whose_period_holds_its_middle_day() -> None:
    # Mon 2025-01-27 .. Sun 02-02 has 5 days in January; Mon 03-31 .. 04-06 has 6 in April.
    weeks = pd.Series(pd.to_datetime(["2025-01-20", "2025-01-27", "2025-03-24", "2025-03-31"]))
    months = pd.period_range("2025-01", "2025-04", freq="M")
    starts = pd.Series([m.start_time for m in months])
    ends = pd.Series([m.end_time.normalize() for m in months])
    assert week_waves(weeks, starts, ends).tolist() == [0, 0, 2, 3]
    assert week_waves(pd.Series(pd.to_datetime(["2025-05-05"])), starts, ends).tolist() == [-1]
    overlapping = week_waves(
        weeks[:1], pd.concat([starts, starts[:1]]), pd.concat([ends, ends[:1]])
    )
    assert overlapping.tolist() == [-2]


def test_sd_comes_from_the_90_percent_interval() -> None:
    assert interval_sd(np.array([0.3]), np.array([0.3]))[0] == 0.0
    np.testing.assert_allclose(interval_sd(np.array([-1.959964]), np.array([1.959964]), 0.95), 1)


def test_brand_as_kpi_replaces_the_kpi_file_with_the_monthly_trend(folder: Path) -> None:
    (folder / "input" / "kpi.csv").unlink()  # not needed: the KPI is the tracker's
    data = read_mmm_input(config(folder))
    de = data.kpi[data.kpi["market"] == "DE"].reset_index(drop=True)
    assert len(de) == 80
    # 2023-01-02 (middle 01-05) is January: 0.30; 2023-01-30 (middle 02-02) is February: 0.31
    assert de.loc[0, "kpi"] == pytest.approx(0.30)
    assert de.loc[de["date"] == "2023-01-30", "kpi"].item() == pytest.approx(0.31)
    assert de.loc[de["date"] == "2023-01-23", "kpi"].item() == pytest.approx(0.30)
    expected = [
        0.30 + 0.01 * MONTHS.get_loc((d + pd.Timedelta(days=3)).to_period("M")) for d in de["date"]
    ]
    np.testing.assert_allclose(de["kpi"], expected)
    assert data.brand is not None
    np.testing.assert_allclose(data.brand.frame["sd"], 0.02 / 1.6448536, rtol=1e-6)
    assert any(key.startswith("brand_link:") for key in data.input_hashes)


def test_brand_as_kpi_spreads_each_waves_spend_evenly_over_its_weeks(folder: Path) -> None:
    """The KPI has one value per wave, so by default the spend does too; totals are kept."""
    media = pd.read_csv(folder / "input" / "media.csv", parse_dates=["date"])
    delivered = media[media["market"] == "DE"].pivot(index="date", columns="channel")["spend"]
    cfg = config(folder, uncertainty_draws=0)
    data = read_mmm_input(cfg)
    frame = prepare_market(data, "DE", cfg).frame.set_index("date")
    month = (frame.index + pd.Timedelta(days=3)).to_period("M")  # the wave of each week
    for channel in ("tv", "search"):
        per_wave = frame[channel].groupby(month)
        assert per_wave.nunique().eq(1).all()  # one weekly spend per wave
        np.testing.assert_allclose(per_wave.sum(), delivered[channel].groupby(month).sum())
    as_delivered = config(folder, uncertainty_draws=0, media="week")
    weekly = prepare_market(read_mmm_input(as_delivered), "DE", as_delivered).frame
    np.testing.assert_allclose(weekly["tv"], delivered["tv"].to_numpy())
    control = config(folder, role="control")
    kept = prepare_market(read_mmm_input(control), "DE", control).frame
    np.testing.assert_allclose(kept["tv"], delivered["tv"].to_numpy())  # only as the KPI


def test_brand_as_control_is_a_scaled_control_of_the_sales_model(folder: Path) -> None:
    cfg = config(folder, role="control")
    data = read_mmm_input(cfg)
    market = prepare_market(data, "FR", cfg)
    assert market.controls == ("price", BRAND_CONTROL, "trend")
    assert market.kpi_draws is None
    fit = market.fit_frame[BRAND_CONTROL]
    assert fit.max() == pytest.approx(1.0)  # scaled by max |x| over the fitted weeks
    # FR's first week is January (0.50), its last fitted week (2024-04-15) April 2024 (0.65)
    assert fit.iloc[0] == pytest.approx(0.50 / 0.65)
    assert data.kpi["kpi"].gt(1000).all()  # the KPI is still sales


def test_unknown_question_option_group_and_market_are_named_with_the_choices(
    folder: Path,
) -> None:
    found = problems(config(folder, question_id="aware_brand99"))
    assert any(
        "no rows with question_id 'aware_brand99'; it has aware_brand01" in p
        and "set brand_link.question_id" in p
        for p in found
    ), found
    found = problems(config(folder, option="maybe", target_group="women"))
    assert any("option 'maybe' for question aware_brand01; it has no, yes" in p for p in found)
    assert any("target_group 'women'" in p and "it has all" in p for p in found), found
    trends_frame(markets=("DE",)).to_parquet(folder / "trends.parquet")
    found = problems(config(folder))
    assert any(
        "no rows of aware_brand01/yes/all for market FR; markets with it: DE" in p for p in found
    ), found


def test_too_few_waves_name_the_uncovered_weeks_and_the_fix(folder: Path) -> None:
    trends_frame(months=MONTHS[:-2]).to_parquet(folder / "trends.parquet")  # no June, July 2024
    found = problems(config(folder))
    assert any(
        "market DE: 6 media week(s) outside every wave of aware_brand01/yes/all "
        "(waves cover 2023-01-01 to 2024-05-31): 2024-06-03"
        in p
        and "publish the tracker's waves for these weeks" in p
        for p in found
    ), found


def test_missing_trends_file_and_brand_control_name_clash_are_refused(folder: Path) -> None:
    found = problems(
        parse_mmm_config(
            {
                "input": str(folder / "input"),
                "output": "o",
                "brand_link": link(folder / "results"),
            }
        )
    )
    assert found == [
        f"{folder}/results/trends.parquet: not found -> point brand_link.trends "
        "at the tracker's results root or its trends.parquet"
    ]
    with pytest.raises(ConfigError, match=r"brand_link\.as: control"):
        parse_mmm_config({"input": "i", "output": "o", "controls": [BRAND_CONTROL]})


def test_trend_draws_share_one_error_per_wave_with_the_trend_sd() -> None:
    weeks = pd.DataFrame({"wave": ["a", "a", "b"], "mean": [0.4, 0.4, 0.5], "sd": [0.02] * 3})
    draws = trend_draws(weeks, 4000, 1)
    np.testing.assert_array_equal(draws[:, 0], draws[:, 1])  # same wave, same draw
    assert np.corrcoef(draws[:, 0], draws[:, 2])[0, 1] == pytest.approx(0, abs=0.05)
    # 4,000 draws: the sd's standard error is ~1.1 %, so 5 % is a safe bound
    assert draws.std(axis=0) == pytest.approx([0.02] * 3, rel=0.05)
    assert draws.mean(axis=0) == pytest.approx([0.4, 0.4, 0.5], abs=0.002)


def kpi_following_functions(market: MarketInput, config: MMMConfig):
    """Each channel contributes 10 % of the KPI series the fit was given, in every draw."""
    layout = layout_for(market, config)
    n = len(market.channels)

    def sample(settings):
        CALLS.append(market.market)
        return settings

    def extract(posterior, settings):
        kpi = market.fit_frame["kpi"].to_numpy()
        contributions = np.repeat(kpi[None, :, None] * 0.1, n + 1, axis=2)
        contributions = np.repeat(contributions, 4, axis=0)
        contributions[..., -1] = kpi * (1 - 0.1 * n)
        sweep = np.broadcast_to(
            np.asarray(SWEEP_FACTORS)[None, :, None] * kpi.sum() * 0.1, (4, len(SWEEP_FACTORS), n)
        )
        adstock = np.full((4, n, layout.l_max), 1.0 / layout.l_max)
        holdout = np.full((4, layout.n_holdout), kpi.mean())
        return layout.pack(
            {"contributions": contributions, "sweep": sweep, "adstock": adstock, "holdout": holdout}
        )

    def diagnose(posterior, seconds):
        return ConvergenceReport(
            r_hat_max=1.001,
            ess_bulk_min=1500,
            ess_tail_min=1200,
            divergences=0,
            bfmi_min=0.9,
            chains=4,
            draws=1000,
            seconds=seconds,
        )

    return sample, extract, diagnose


def roas_width(folder: Path, half_width: float, draws: int) -> pd.Series:
    trends_frame(half_width).to_parquet(folder / "trends.parquet")
    cfg = config(folder, uncertainty_draws=draws).model_copy(
        update={"sampler": SamplerConfig(stored_draws=100), "run": f"w{half_width}-{draws}"}
    )
    roas = run_mmm(cfg, workers=1, functions=kpi_following_functions).roas
    assert roas["status"].eq("converged").all()
    return (roas["roas_upper"] - roas["roas_lower"]).set_axis(
        roas["market"] + "/" + roas["channel"]
    )


def test_wider_trend_intervals_give_wider_roas_intervals(folder: Path) -> None:
    CALLS.clear()
    exact = roas_width(folder, 0.02, draws=0)
    assert CALLS == ["DE", "FR"]  # the mean only: one fit per market
    assert exact.eq(0).all()  # the fake's draws agree, so only the trend can spread them
    CALLS.clear()
    narrow = roas_width(folder, 0.02, draws=8)
    assert CALLS == ["DE"] * 8 + ["FR"] * 8  # one fit per draw of the trend
    wide = roas_width(folder, 0.08, draws=8)
    assert (narrow > 0).all()
    # the same z per wave (same seed), so the spread scales with the sd exactly (no zero floor
    # is reached at 0.30 - 4 sd)
    np.testing.assert_allclose(wide / narrow, 4.0, rtol=1e-6)
