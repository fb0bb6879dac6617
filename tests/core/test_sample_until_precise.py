"""Sampling until precise: a running sampler is judged at each look, stopped at the first pass."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import xarray as xr

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.fitting import RunningSampler, fit_with_policy
from misterp.records import ConvergenceReport
from misterp.status import FitStatus

THRESHOLDS = ConvergenceThresholds()
SAMPLER = SamplerConfig(draws=1000, check_every=250, tune=500)


class ScriptedRun(RunningSampler):
    """Chains drawn in advance (draw k of chain c = 1000 c + k), handed out look by look."""

    def __init__(self, settings: SamplerConfig, *, ends_after: int | None = None) -> None:
        draws = np.arange(settings.draws, dtype=float)
        self.values = np.stack([1000 * chain + draws for chain in range(settings.chains)])
        self.ends_after = ends_after
        self.looked: list[int] = []
        self.finished = False
        self.stopped = 0

    def wait_for(self, draws: int) -> bool:
        return self.ends_after is None or draws <= self.ends_after

    def first(self, draws: int) -> Any:
        self.looked.append(draws)
        return self._tree(self.values[:, :draws])

    def finish(self) -> Any:
        if self.ends_after is not None:
            raise RuntimeError("chain 2 failed: planted")
        self.finished = True
        return self._tree(self.values)

    def stop(self) -> None:
        self.stopped += 1

    @staticmethod
    def _tree(values: np.ndarray) -> Any:
        return xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), values)})})


def judged(passes_from: float = math.inf, divergences: int = 0) -> Any:
    """A diagnose function: passes once the posterior has ``passes_from`` draws per chain."""

    def diagnose(posterior: Any, seconds: float) -> ConvergenceReport:
        draws = int(posterior["posterior"].sizes["draw"])
        ok = draws >= passes_from
        return ConvergenceReport(
            r_hat_max=1.001 if ok else 1.05, ess_bulk_min=500, ess_tail_min=math.nan,
            divergences=divergences, bfmi_min=1.0, chains=4, draws=draws, seconds=seconds,
            estimands=2, estimand_ess_bulk_min=800, estimand_ess_tail_min=600,
            r_hat_worst="1|age_sigma", ess_bulk_worst="1|age_sigma",
            estimand_ess_worst="DE/aware/yes in all",
        )  # fmt: skip

    return diagnose


def last_draw(posterior: Any, settings: SamplerConfig) -> np.ndarray:
    """What these fits keep: the last draw of every chain (shows where the chains were cut)."""
    return np.asarray(posterior["posterior"]["mu"])[:, -1]


def fit(runs: list[ScriptedRun], diagnose: Any, **options: Any) -> Any:
    def sample(settings: SamplerConfig) -> ScriptedRun:
        runs.append(ScriptedRun(settings, **options))
        return runs[-1]

    return fit_with_policy(
        sample,
        last_draw,
        key="DE/aware/yes",
        sampler=SAMPLER,
        thresholds=THRESHOLDS,
        policy=RetryPolicy(),
        diagnose=diagnose,
    )


def test_a_fit_stops_at_the_first_look_that_passes_and_keeps_those_draws() -> None:
    runs: list[ScriptedRun] = []
    result = fit(runs, judged(passes_from=500))

    assert result.status is FitStatus.CONVERGED
    assert len(result.attempts) == 1
    assert runs[0].looked == [250, 500]
    assert not runs[0].finished
    assert runs[0].stopped == 1
    assert result.attempts[0].report is not None
    assert result.attempts[0].report.draws == 500  # the draws it was judged on, recorded
    # the kept draws are the first 500 of each chain, not the run's later ones
    np.testing.assert_array_equal(result.draws, [499, 1499, 2499, 3499])


def test_a_fit_that_never_passes_runs_to_the_cap_then_climbs_the_ladder() -> None:
    runs: list[ScriptedRun] = []
    result = fit(runs, judged())

    assert result.status is FitStatus.NOT_CONVERGED
    assert [run.looked for run in runs] == [
        [250, 500, 750],  # then to the cap, 1,000
        [250, 500, 750, 1000, 1250, 1500, 1750],  # twice the draws, the same looks
        list(range(250, 4000, 250)),
    ]
    assert all(run.finished and run.stopped == 1 for run in runs)
    assert [a.sampler.draws for a in result.attempts] == [1000, 2000, 4000]
    assert [a.report.draws for a in result.attempts if a.report] == [1000, 2000, 4000]
    assert result.attempts[0].failures[0] == "r_hat 1.050 > 1.01 (1|age_sigma)"


def test_divergences_at_a_look_end_the_attempt_there_since_drawing_on_cannot_pass() -> None:
    runs: list[ScriptedRun] = []
    result = fit(runs, judged(passes_from=250, divergences=3))

    assert runs[0].looked == [250]
    assert not runs[0].finished
    first = result.attempts[0]
    assert first.status is FitStatus.NOT_CONVERGED
    assert first.limited_by == "divergences"
    assert result.attempts[1].sampler.target_accept == 0.99  # the ladder, as for a full run


def test_a_sampler_that_dies_between_looks_fails_the_fit_with_its_error_and_is_stopped() -> None:
    runs: list[ScriptedRun] = []
    result = fit(runs, judged(passes_from=750), ends_after=300)

    assert result.status is FitStatus.FAILED
    assert runs[0].looked == [250]
    assert runs[0].stopped == 1
    assert result.error is not None
    assert "chain 2 failed: planted" in result.error
    assert result.draws is None


def test_what_limited_a_converged_fit_is_recorded_with_its_quantity() -> None:
    runs: list[ScriptedRun] = []
    result = fit(runs, judged(passes_from=250))

    # estimand tail ESS 600 of 400 uses 67% of its margin; R-hat 1.001 of 1.01 10%,
    # parameter bulk ESS 500 of 100 20%: the estimand's tail decided
    assert result.attempts[0].limited_by == "estimand tail ESS of DE/aware/yes in all"


@pytest.mark.parametrize(
    ("sampler", "message"),
    [
        ({"draws": 200, "check_every": 250}, "check_every (250) is above the draws cap (200)"),
        ({"draws": 1000, "check_every": 0}, "greater than 0"),
    ],
)
def test_a_first_look_past_the_cap_is_refused(sampler: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SamplerConfig(**sampler)


def test_without_a_check_every_the_default_first_look_past_a_small_cap_means_one_look() -> None:
    small = SamplerConfig(draws=100)
    assert small.looks() == [100]
    assert SamplerConfig.model_validate_json(small.model_dump_json()) == small
    assert SamplerConfig().looks() == [250, 500, 750, 1000]


def test_an_ess_threshold_above_what_the_cap_can_give_is_refused_by_the_wave_config() -> None:
    from pydantic import ValidationError

    from misterp.mrp.config import WaveConfig

    with pytest.raises(ValidationError) as info:
        WaveConfig(
            input="in",
            output="out",
            demographics=["age"],
            sampler=SamplerConfig(draws=300, chains=2),
            convergence=ConvergenceThresholds(ess_tail_min=1000),
        )
    assert (
        "convergence.ess_tail_min (1000) is above the 600 draws the sampler's cap allows "
        "(sampler.chains 2 x sampler.draws 300); raise sampler.draws to at least 500"
    ) in str(info.value)


def test_a_media_mix_config_keeps_the_all_parameter_policy() -> None:
    from pydantic import ValidationError

    from misterp.config import ConvergencePolicy
    from misterp.mmm.config import MMMConvergence

    assert MMMConvergence(r_hat_max=1.02).policy is ConvergencePolicy.ALL_PARAMETERS
    with pytest.raises(ValidationError, match="all_parameters"):
        MMMConvergence(policy="estimands")


def report(**changes: Any) -> ConvergenceReport:
    values: dict[str, Any] = {
        "r_hat_max": 1.004, "ess_bulk_min": 150.0, "ess_tail_min": math.nan, "divergences": 0,
        "bfmi_min": 0.9, "chains": 4, "draws": 500, "estimands": 3,
        "estimand_ess_bulk_min": 900.0, "estimand_ess_tail_min": 700.0,
        "r_hat_worst": "1|age_sigma", "ess_bulk_worst": "1|region_sigma",
        "estimand_ess_worst": "DE/aware/yes in women",
    }  # fmt: skip
    return ConvergenceReport(**(values | changes))


def test_the_estimand_policy_asks_400_of_the_estimands_and_100_of_the_parameters() -> None:
    from misterp.config import ConvergencePolicy

    assert report().passes(THRESHOLDS)  # parameter bulk ESS 150: enough for R-hat
    old = ConvergenceThresholds(policy=ConvergencePolicy.ALL_PARAMETERS)
    assert report().failures(old) == [
        "bulk ESS 150 < 400 (1|region_sigma)",
        "tail ESS nan < 400 (1|region_sigma)",
    ]
    assert report(estimand_ess_tail_min=350.0).failures(THRESHOLDS) == [
        "estimand tail ESS 350 < 400 (DE/aware/yes in women)"
    ]
    assert report(ess_bulk_min=80.0).failures(THRESHOLDS) == [
        "parameter bulk ESS 80 < 100 (1|region_sigma)"
    ]
    assert report(r_hat_max=1.02).failures(THRESHOLDS) == ["r_hat 1.020 > 1.01 (1|age_sigma)"]


def test_a_fit_without_estimands_cannot_pass_the_estimand_policy() -> None:
    failures = report(
        estimands=0, estimand_ess_bulk_min=math.nan, estimand_ess_tail_min=math.nan
    ).failures(THRESHOLDS)
    assert failures == ["no published estimand to judge (convergence.policy: estimands)"]


def test_a_media_mix_sampler_section_keeps_the_media_mix_defaults() -> None:
    from misterp.mmm.config import MMMConfig

    config = MMMConfig(input="in", output="out", sampler={"draws": 2000})
    sampler = config.sampler
    assert (sampler.draws, sampler.tune, sampler.target_accept) == (2000, 500, 0.9)
    assert sampler.looks() == [2000]  # pymc-marketing is judged once
    assert type(sampler) is SamplerConfig  # what its records store and read back
