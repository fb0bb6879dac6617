"""Convergence of one fit, judged on numbers a person would otherwise read off trace plots.

Missing statistics count as *unknown*, and unknown is never a pass: a posterior without
sample stats (a mocked sampler, a truncated trace) is reported as not converged.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import arviz as az
import numpy as np
import xarray as xr

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig

__all__ = ["ConvergenceReport", "check_convergence", "monitored_variables", "next_attempt"]


@dataclass(frozen=True)
class ConvergenceReport:
    """Diagnostics of one sampling attempt.

    ``r_hat_max`` is the worst split R-hat, ``ess_*_min`` the smallest effective sample sizes,
    over the model's parameters (non-centred ``_offset`` helpers excluded: the group effects
    they build are monitored directly). ``bfmi_min`` flags poor energy exploration.
    """

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    bfmi_min: float
    chains: int
    draws: int
    seconds: float = math.nan

    def failures(self, thresholds: ConvergenceThresholds) -> list[str]:
        """Human-readable reasons this attempt misses the thresholds (empty when it passes)."""
        reasons = []
        if not self.r_hat_max <= thresholds.r_hat_max:  # NaN fails
            reasons.append(f"r_hat {self.r_hat_max:.3f} > {thresholds.r_hat_max}")
        if not self.ess_bulk_min >= thresholds.ess_bulk_min:
            reasons.append(f"bulk ESS {self.ess_bulk_min:.0f} < {thresholds.ess_bulk_min:.0f}")
        if not self.ess_tail_min >= thresholds.ess_tail_min:
            reasons.append(f"tail ESS {self.ess_tail_min:.0f} < {thresholds.ess_tail_min:.0f}")
        if self.divergences < 0:
            reasons.append("divergences unknown (no sample stats)")
        elif self.divergences > thresholds.divergences_max:
            reasons.append(f"{self.divergences} divergences > {thresholds.divergences_max}")
        return reasons

    def passes(self, thresholds: ConvergenceThresholds) -> bool:
        """True when every threshold is met."""
        return not self.failures(thresholds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (NaN becomes None)."""
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


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
