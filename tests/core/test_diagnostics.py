"""Convergence reports, the retry ladder, and diagnostics on hand-built posteriors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from misterp.config import ConvergencePolicy, ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.diagnostics import (
    ConvergenceReport,
    check_convergence,
    monitored_variables,
    next_attempt,
    stacked_draws,
)

# the pre-issue-23 policy: ESS 400/400 on every parameter, r_hat 1.01, 0 divergences
THRESHOLDS = ConvergenceThresholds(policy=ConvergencePolicy.ALL_PARAMETERS)
POLICY = RetryPolicy()  # 3 attempts, ladder [0.99, 0.995], x2 tune, x2 draws
SAMPLER = SamplerConfig(tune=1000)  # 1000 draws, 1000 tune, target_accept 0.95


def report(**changes: float) -> ConvergenceReport:
    values = {
        "r_hat_max": 1.001,
        "ess_bulk_min": 1500.0,
        "ess_tail_min": 1200.0,
        "divergences": 0,
        "bfmi_min": 0.9,
        "chains": 4,
        "draws": 1000,
    }
    values.update(changes)
    return ConvergenceReport(**values)  # type: ignore[arg-type]


def test_a_good_report_has_no_failures() -> None:
    assert report().failures(THRESHOLDS) == []
    assert report().passes(THRESHOLDS)


def test_nan_r_hat_fails() -> None:
    failures = report(r_hat_max=math.nan).failures(THRESHOLDS)
    assert len(failures) == 1
    assert failures[0].startswith("r_hat nan")


def test_unknown_divergences_fail() -> None:
    assert report(divergences=-1).failures(THRESHOLDS) == ["divergences unknown (no sample stats)"]


def test_divergences_above_the_maximum_fail() -> None:
    assert report(divergences=2).failures(THRESHOLDS) == ["2 divergences > 0"]


def test_low_ess_fails_for_bulk_and_tail() -> None:
    failures = report(ess_bulk_min=100.0, ess_tail_min=50.0).failures(THRESHOLDS)
    assert failures == ["bulk ESS 100 < 400", "tail ESS 50 < 400"]


def test_r_hat_exactly_at_the_threshold_passes() -> None:
    assert report(r_hat_max=1.01).passes(THRESHOLDS)


def test_nan_is_stored_as_null_and_read_back_as_nan() -> None:
    stored = report(r_hat_max=math.nan)
    assert stored.model_dump(mode="json")["r_hat_max"] is None
    again = type(stored).model_validate_json(stored.model_dump_json())
    assert math.isnan(again.r_hat_max)
    assert again.model_copy(update={"r_hat_max": 1.0}) == stored.model_copy(
        update={"r_hat_max": 1.0}
    )


def test_next_attempt_is_none_when_the_report_passes() -> None:
    assert next_attempt(report(), SAMPLER, POLICY, THRESHOLDS, attempt=1) is None


def test_next_attempt_gives_up_at_max_attempts() -> None:
    assert next_attempt(report(divergences=5), SAMPLER, POLICY, THRESHOLDS, attempt=3) is None


def test_divergences_raise_target_accept_to_the_next_rung_and_double_tune() -> None:
    nxt = next_attempt(report(divergences=5), SAMPLER, POLICY, THRESHOLDS, attempt=1)
    assert nxt is not None
    assert nxt.target_accept == 0.99
    assert nxt.tune == 2000
    assert nxt.draws == 1000
    assert nxt.random_seed == SAMPLER.random_seed + 1


def test_divergences_climb_the_ladder_on_a_second_retry() -> None:
    second = SAMPLER.model_copy(update={"target_accept": 0.99, "tune": 2000})
    nxt = next_attempt(report(divergences=1), second, POLICY, THRESHOLDS, attempt=2)
    assert nxt is not None
    assert nxt.target_accept == 0.995
    assert nxt.tune == 4000


def test_divergences_at_the_top_of_the_ladder_keep_target_accept_and_tune_longer() -> None:
    top = SAMPLER.model_copy(update={"target_accept": 0.995})
    policy = RetryPolicy(max_attempts=5)
    nxt = next_attempt(report(divergences=1), top, policy, THRESHOLDS, attempt=3)
    assert nxt is not None
    assert nxt.target_accept == 0.995
    assert nxt.tune == 2000


def test_unknown_divergences_are_treated_as_divergences() -> None:
    nxt = next_attempt(report(divergences=-1), SAMPLER, POLICY, THRESHOLDS, attempt=1)
    assert nxt is not None
    assert nxt.target_accept == 0.99


def test_low_ess_doubles_draws_and_keeps_target_accept() -> None:
    nxt = next_attempt(report(ess_bulk_min=100.0), SAMPLER, POLICY, THRESHOLDS, attempt=1)
    assert nxt is not None
    assert nxt.draws == 2000
    assert nxt.target_accept == 0.95


def test_high_r_hat_doubles_draws() -> None:
    nxt = next_attempt(report(r_hat_max=1.2), SAMPLER, POLICY, THRESHOLDS, attempt=1)
    assert nxt is not None
    assert nxt.draws == 2000


def posterior_tree(
    values: np.ndarray, *, with_stats: bool = True, diverging: np.ndarray | None = None
) -> xr.DataTree:
    """A DataTree with one scalar parameter ``mu`` of shape (chain, draw)."""
    chains, draws = values.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    posterior = xr.Dataset(
        {
            "mu": (("chain", "draw"), values),
            "mu_offset": (("chain", "draw"), np.zeros_like(values)),
        },
        coords=coords,
    )
    tree: dict[str, xr.Dataset] = {"posterior": posterior}
    if with_stats:
        rng = np.random.default_rng(99)
        tree["sample_stats"] = xr.Dataset(
            {
                "diverging": (
                    ("chain", "draw"),
                    np.zeros((chains, draws), dtype=bool) if diverging is None else diverging,
                ),
                "energy": (("chain", "draw"), rng.normal(size=(chains, draws))),
            },
            coords=coords,
        )
    return xr.DataTree.from_dict(tree)


def test_well_mixed_iid_chains_pass() -> None:
    values = np.random.default_rng(0).normal(size=(4, 1000))
    result = check_convergence(posterior_tree(values), seconds=1.5)
    assert result.chains == 4
    assert result.draws == 1000
    assert result.r_hat_max < 1.01
    assert result.ess_bulk_min > 2000
    assert result.ess_tail_min > 1000
    assert result.divergences == 0
    assert result.bfmi_min > 1.0  # iid energy: E[(dE)^2] / Var(E) is about 2
    assert result.seconds == 1.5
    assert result.passes(THRESHOLDS)


def test_counts_divergences_from_sample_stats() -> None:
    values = np.random.default_rng(0).normal(size=(4, 500))
    diverging = np.zeros((4, 500), dtype=bool)
    diverging[1, [3, 7, 11]] = True
    result = check_convergence(posterior_tree(values, diverging=diverging))
    assert result.divergences == 3
    assert not result.passes(THRESHOLDS)


def test_steps_per_draw_is_the_mean_tree_size_and_unknown_without_it() -> None:
    values = np.random.default_rng(0).normal(size=(2, 4))
    tree = posterior_tree(values)
    stats = tree["sample_stats"].to_dataset()
    steps = np.array([[3, 7, 15, 7], [31, 1, 3, 7]])
    tree["sample_stats"] = stats.assign(n_steps=(("chain", "draw"), steps))
    assert check_convergence(tree).steps_per_draw == 74 / 8
    assert math.isnan(check_convergence(posterior_tree(values)).steps_per_draw)


def test_chains_with_different_means_give_a_high_r_hat() -> None:
    values = np.random.default_rng(0).normal(size=(4, 1000)) + np.arange(4)[:, None] * 3.0
    result = check_convergence(posterior_tree(values))
    assert result.r_hat_max > 1.5
    assert not result.passes(THRESHOLDS)


def test_posterior_without_sample_stats_has_unknown_divergences_and_fails() -> None:
    values = np.random.default_rng(0).normal(size=(4, 1000))
    result = check_convergence(posterior_tree(values, with_stats=False))
    assert result.divergences == -1
    assert math.isnan(result.bfmi_min)
    assert not result.passes(THRESHOLDS)
    assert result.failures(THRESHOLDS) == ["divergences unknown (no sample stats)"]


def test_offset_helpers_are_not_monitored() -> None:
    # mu_offset is constant (R-hat NaN); it must not turn a good fit into a failure.
    values = np.random.default_rng(0).normal(size=(4, 1000))
    result = check_convergence(posterior_tree(values))
    assert np.isfinite(result.r_hat_max)


@pytest.mark.parametrize("chains", [2, 4])
def test_reports_the_posterior_shape(chains: int) -> None:
    values = np.random.default_rng(chains).normal(size=(chains, 300))
    result = check_convergence(posterior_tree(values))
    assert (result.chains, result.draws) == (chains, 300)


def per_variable_diagnostics(posterior: xr.Dataset, names: list[str]) -> tuple[float, ...]:
    """The definition the thresholds were set on: ArviZ per variable of the posterior Dataset."""
    import arviz as az

    params = posterior[names]
    flat = [
        np.concatenate([np.asarray(v).ravel() for v in result.data_vars.values()])
        for result in (
            az.rhat(params),
            az.ess(params, method="bulk"),
            az.ess(params, method="tail"),
        )
    ]
    return float(np.max(flat[0])), float(np.min(flat[1])), float(np.min(flat[2]))


def test_stacked_diagnostics_equal_arviz_per_variable_on_a_fixed_posterior() -> None:
    rng = np.random.default_rng(20250601)
    chains, draws = 4, 500

    def autocorrelated(*shape: int) -> np.ndarray:
        noise = rng.normal(size=(chains, draws, *shape))
        return noise + 0.05 * np.cumsum(noise, axis=1)  # slow drift: R-hat and ESS off ideal

    posterior = xr.Dataset(
        {
            "Intercept": (("chain", "draw"), autocorrelated()),
            "gender": (("chain", "draw", "gender_dim"), autocorrelated(1)),
            "1|age_sigma": (("chain", "draw"), np.abs(autocorrelated())),
            "1|age_offset": (("chain", "draw", "age"), autocorrelated(5)),
            "1|age": (("chain", "draw", "age"), autocorrelated(5)),
            "pair": (("chain", "draw", "a", "b"), autocorrelated(2, 3)),
            # stored in another dimension order: the diagnostics must not depend on it
            "late": (("late_dim", "chain", "draw"), np.moveaxis(autocorrelated(3), -1, 0)),
            "p": (("chain", "draw", "__obs__"), rng.uniform(size=(chains, draws, 40))),
        },
        coords={"chain": np.arange(chains), "draw": np.arange(draws)},
    )
    names = ["Intercept", "gender", "1|age_sigma", "1|age", "pair", "late"]
    assert monitored_variables(posterior) == names

    result = check_convergence(xr.DataTree.from_dict({"posterior": posterior}))

    r_hat, ess_bulk, ess_tail = per_variable_diagnostics(posterior, names)
    # the same ArviZ arithmetic on the same numbers; 1e-12 leaves room for summation order only
    assert result.r_hat_max == pytest.approx(r_hat, abs=1e-12)
    assert result.ess_bulk_min == pytest.approx(ess_bulk, abs=1e-12)
    assert result.ess_tail_min == pytest.approx(ess_tail, abs=1e-12)
    assert (result.chains, result.draws) == (chains, draws)


def test_stacked_draws_hold_one_row_per_scalar_in_variable_order() -> None:
    values = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    posterior = xr.Dataset(
        {"a": (("chain", "draw"), values[..., 0]), "b": (("chain", "draw", "k"), values)}
    )
    stacked = stacked_draws(posterior, ["a", "b"])
    assert stacked.shape == (3, 2, 3)
    np.testing.assert_array_equal(stacked[0], values[..., 0])
    np.testing.assert_array_equal(stacked[1:], np.moveaxis(values, -1, 0))
    assert stacked.flags.c_contiguous


def test_a_posterior_with_nothing_to_monitor_has_unknown_mixing_and_fails() -> None:
    posterior = xr.Dataset({"x_offset": (("chain", "draw"), np.zeros((2, 50)))})
    result = check_convergence(xr.DataTree.from_dict({"posterior": posterior}))
    assert math.isnan(result.r_hat_max)
    assert math.isnan(result.ess_bulk_min)
    assert not result.passes(THRESHOLDS)


def test_all_at_once_diagnostics_equal_arviz_on_ties_constants_nan_and_slow_chains() -> None:
    import arviz as az

    from misterp.diagnostics import ess_bulk, ess_tail, rank_r_hat

    rng = np.random.default_rng(7)
    quantities, chains, draws = 12, 4, 301  # an odd length: the split drops the middle draw
    values = rng.normal(size=(quantities, chains, draws))
    for k in range(1, draws):  # AR(1), from independent to very sticky
        values[:, :, k] += np.linspace(0, 0.97, quantities)[:, None] * values[:, :, k - 1]
    values[1] += np.arange(chains)[:, None]  # chains apart
    values[2] = np.round(values[2])  # ties
    values[3] = 0.5  # constant
    values[4, 1, 7] = np.nan  # unknown
    axes = {"chain_axis": 1, "draw_axis": 2}
    expected = (
        np.asarray(az.rhat(values, **axes)),
        np.asarray(az.ess(values, method="bulk", **axes)),
        np.asarray(az.ess(values, method="tail", prob=0.94, **axes)),
    )
    ours = (rank_r_hat(values), ess_bulk(values), ess_tail(values, 0.94))
    for theirs, mine in zip(expected, ours, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-10, equal_nan=True)
    assert all(np.isnan(statistic[4]) for statistic in ours)


def test_estimands_join_r_hat_and_get_their_own_ess_with_the_worst_named() -> None:
    rng = np.random.default_rng(3)
    mixed = rng.normal(size=(4, 400))
    stuck = rng.normal(size=(2, 4, 400)) * 0.1 + np.array([[0.0], [0.0], [0.0], [1.0]])
    result = check_convergence(
        posterior_tree(mixed), estimands=(("DE/q/yes in all", "DE/q/yes in women"), stuck)
    )
    assert result.estimands == 2
    assert result.r_hat_max > 1.5
    assert result.r_hat_worst in {"DE/q/yes in all", "DE/q/yes in women"}
    assert result.ess_bulk_worst == "mu"
    import arviz as az

    expected_bulk = min(
        float(az.ess(stuck[i][None], method="bulk", chain_axis=1, draw_axis=2)[0]) for i in range(2)
    )
    assert result.estimand_ess_bulk_min == pytest.approx(expected_bulk, rel=1e-10)
    assert not result.passes(ConvergenceThresholds())
