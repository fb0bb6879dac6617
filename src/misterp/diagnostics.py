"""Convergence of one fit, judged on numbers a person would otherwise read off trace plots.

Missing statistics count as *unknown*, and unknown is never a pass: a posterior without
sample stats (a mocked sampler, a truncated trace) is reported as not converged.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.records import ConvergenceReport

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["ConvergenceReport", "check_convergence", "monitored_variables", "next_attempt"]


def monitored_variables(posterior: xr.Dataset) -> list[str]:
    """The parameters whose mixing decides convergence."""
    return [
        str(name)
        for name, var in posterior.data_vars.items()
        if not str(name).endswith("_offset") and "__obs__" not in var.dims
    ]


def _min_or_nan(dataset: xr.Dataset) -> float:
    values = [np.asarray(v).ravel() for v in dataset.data_vars.values()]
    flat = np.concatenate(values) if values else np.array([np.nan])
    return float(np.nanmin(flat)) if np.isfinite(flat).any() else math.nan


def check_convergence(idata: Any, seconds: float = math.nan) -> ConvergenceReport:
    """Compute a ``ConvergenceReport`` from an ArviZ ``DataTree``/``InferenceData``."""
    import arviz as az  # imported here: reading a report (health, alerts) needs no ArviZ

    posterior = idata["posterior"]
    posterior = posterior.to_dataset() if hasattr(posterior, "to_dataset") else posterior
    names = monitored_variables(posterior)
    params = posterior[names]
    chains, draws = int(posterior.sizes["chain"]), int(posterior.sizes["draw"])
    r_hat = az.rhat(params)
    r_hat_ds = r_hat.to_dataset() if hasattr(r_hat, "to_dataset") else r_hat
    r_hat_values = np.concatenate([np.asarray(v).ravel() for v in r_hat_ds.data_vars.values()])
    r_hat_max = float(np.max(r_hat_values)) if np.isfinite(r_hat_values).all() else math.nan
    ess_bulk = az.ess(params, method="bulk")
    ess_tail = az.ess(params, method="tail")
    divergences, bfmi_min = -1, math.nan
    if (
        "sample_stats" in idata.children
        if hasattr(idata, "children")
        else hasattr(idata, "sample_stats")
    ):
        stats = idata["sample_stats"]
        stats = stats.to_dataset() if hasattr(stats, "to_dataset") else stats
        if "diverging" in stats:
            divergences = int(np.asarray(stats["diverging"]).sum())
        if "energy" in stats:
            energy = np.asarray(stats["energy"], dtype=float)
            bfmi = np.square(np.diff(energy, axis=1)).mean(axis=1) / np.var(energy, axis=1)
            bfmi_min = float(np.min(bfmi))
    return ConvergenceReport(
        r_hat_max=r_hat_max,
        ess_bulk_min=_min_or_nan(
            ess_bulk.to_dataset() if hasattr(ess_bulk, "to_dataset") else ess_bulk
        ),
        ess_tail_min=_min_or_nan(
            ess_tail.to_dataset() if hasattr(ess_tail, "to_dataset") else ess_tail
        ),
        divergences=divergences,
        bfmi_min=bfmi_min,
        chains=chains,
        draws=draws,
        seconds=seconds,
    )


def next_attempt(
    report: ConvergenceReport,
    sampler: SamplerConfig,
    policy: RetryPolicy,
    thresholds: ConvergenceThresholds,
    attempt: int,
) -> SamplerConfig | None:
    """Stronger sampler settings for the next attempt, or None to give up.

    ``attempt`` is the 1-based number of the attempt that produced ``report``.
    Divergences mean the step size is too large for the posterior's curvature: raise
    ``target_accept`` and tune longer. Low ESS or high R-hat with no divergences mean the
    chains are sound but too short: draw more.
    """
    if report.passes(thresholds) or attempt >= policy.max_attempts:
        return None
    update: dict[str, Any] = {"random_seed": sampler.random_seed + 1}
    if report.divergences > thresholds.divergences_max or report.divergences < 0:
        higher = [t for t in policy.target_accept_ladder if t > sampler.target_accept]
        if higher:
            update["target_accept"] = higher[0]
        update["tune"] = int(sampler.tune * policy.tune_factor)
    mixing = (
        not report.r_hat_max <= thresholds.r_hat_max
        or not report.ess_bulk_min >= thresholds.ess_bulk_min
        or not report.ess_tail_min >= thresholds.ess_tail_min
    )
    if mixing:
        update["draws"] = int(sampler.draws * policy.draws_factor)
        update["tune"] = max(
            update.get("tune", sampler.tune), int(sampler.tune * policy.tune_factor)
        )
    return sampler.model_copy(update=update)
