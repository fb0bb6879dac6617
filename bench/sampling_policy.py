"""Which sampling settings pass issue 23's convergence policy, and at what cost?

Issue 23 decides a policy: R-hat <= 1.01 on every parameter, bulk and tail ESS >= 400 on every
published estimand (each target group's poststratified share), bulk ESS >= 100 on the
parameters, no divergences; today's policy asks ESS >= 400 of every parameter. Before building
"sample until precise", this bench measures what fixed runs would pass either policy. It fits
the first ``--models`` models of a simulated wave that are not in a joint family (the default
model, nutpie; each target group's share weighted by the census alone, also for a conditional
question) with several (tune, draws) settings and prints, per setting, the mean seconds and
leapfrog steps per fit, the share of fits that pass each policy and, for the new one, which
criterion failed.

Run: ``.venv/bin/python bench/sampling_policy.py --models 40`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from misterp.config import SamplerConfig
from misterp.diagnostics import check_convergence
from misterp.mrp.config import parse_config
from misterp.mrp.model import CELL_PROBABILITY, cell_sampler
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave

#: (label, tune, draws per chain, chains).
SETTINGS = (
    ("default 500 + 1000", 500, 1000, 4),
    ("500 + 500", 500, 500, 4),
    ("300 + 500", 300, 500, 4),
    ("500 + 250", 500, 250, 4),
    ("300 + 250", 300, 250, 4),
    ("500 + 250, 8 chains", 500, 250, 8),
)
#: The settings whose estimates ``--agreement`` compares with a long reference run.
AGREEMENT_SETTINGS = ("default 500 + 1000", "500 + 500")


@dataclass(frozen=True)
class Verdict:
    """One fit under one setting: cost and what each policy says."""

    seconds: float
    steps_per_draw: float
    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    estimand_bulk_min: float
    estimand_tail_min: float

    @property
    def old_policy(self) -> bool:
        return (
            self.r_hat_max <= 1.01
            and min(self.ess_bulk_min, self.ess_tail_min) >= 400
            and self.divergences == 0
        )

    @property
    def new_policy_failure(self) -> str | None:
        if self.divergences > 0:
            return "divergences"
        if not self.r_hat_max <= 1.01:
            return "r_hat"
        if min(self.estimand_bulk_min, self.estimand_tail_min) < 400:
            return "estimand ess"
        if self.ess_bulk_min < 100:
            return "parameter ess"
        return None


def estimand_ess(posterior: object, prepared: PreparedWave, market: str) -> tuple[float, float]:
    """The smallest bulk and tail ESS over the target groups' census-weighted shares."""
    import arviz as az
    from arviz_base import rcParams

    cells = np.asarray(posterior["posterior"][CELL_PROBABILITY])  # type: ignore[index]
    layout = prepared.layouts[market]
    population = layout.frame["population"].to_numpy(dtype=float)
    bulk, tail = [], []
    for mask in layout.masks.values():
        weights = population * mask
        if weights.sum() <= 0:
            continue
        share = cells @ (weights / weights.sum())  # (chain, draw)
        bulk.append(float(az.ess(share[None], method="bulk", chain_axis=1, draw_axis=2)[0]))
        tail.append(
            float(
                az.ess(
                    share[None],
                    method="tail",
                    prob=rcParams["stats.ci_prob"],  # as check_convergence
                    chain_axis=1,
                    draw_axis=2,
                )[0]
            )
        )
    return min(bulk), min(tail)


def r_hat_by_kind(posterior: object) -> dict[str, float]:
    """The largest R-hat of the group sds, of the other parameters, and the kind that is worst."""
    import arviz as az

    from misterp.diagnostics import monitored_variables

    draws = posterior["posterior"]  # type: ignore[index]
    draws = draws.to_dataset() if hasattr(draws, "to_dataset") else draws
    r_hat = {
        name: float(np.nanmax(np.asarray(az.rhat(draws[name]))))
        for name in monitored_variables(draws)
    }
    sds = [v for n, v in r_hat.items() if n.endswith("_sigma")]
    others = [v for n, v in r_hat.items() if not n.endswith("_sigma")]
    name = max(r_hat, key=lambda n: r_hat[n])
    kind = "group sd" if name.endswith("_sigma") else "group effect" if "|" in name else "common"
    return {
        "r_hat_sd": max(sds, default=1.0),
        "r_hat_other": max(others, default=1.0),
        "worst": kind,  # type: ignore[dict-item]
    }


def share_means(posterior: object, prepared: PreparedWave, market: str) -> pd.DataFrame:
    """Each target group's census-weighted share: posterior mean and its Monte Carlo se."""
    import arviz as az

    cells = np.asarray(posterior["posterior"][CELL_PROBABILITY])  # type: ignore[index]
    layout = prepared.layouts[market]
    population = layout.frame["population"].to_numpy(dtype=float)
    rows = []
    for group, mask in layout.masks.items():
        weights = population * mask
        if weights.sum() > 0:
            share = cells @ (weights / weights.sum())
            mcse = float(az.mcse(share[None], method="mean", chain_axis=1, draw_axis=2)[0])
            rows.append({"group": group, "mean": float(share.mean()), "mcse": mcse})
    return pd.DataFrame(rows)


def estimand_r_hat(posterior: object, prepared: PreparedWave, market: str) -> float:
    """The largest R-hat over the target groups' census-weighted shares."""
    import arviz as az

    cells = np.asarray(posterior["posterior"][CELL_PROBABILITY])  # type: ignore[index]
    layout = prepared.layouts[market]
    population = layout.frame["population"].to_numpy(dtype=float)
    values = []
    for mask in layout.masks.values():
        weights = population * mask
        if weights.sum() > 0:
            share = cells @ (weights / weights.sum())
            values.append(float(az.rhat(share[None], chain_axis=1, draw_axis=2)[0]))
    return max(values)


def agreement(run: pd.DataFrame, ref: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Estimates joined with the reference's on their index, and |a - b| / sqrt(mcse^2 + ...)."""
    joined = run.merge(ref, left_index=True, right_index=True, suffixes=("", "_ref"))
    z: pd.Series = (joined["mean"] - joined["mean_ref"]).abs() / np.sqrt(
        joined["mcse"] ** 2 + joined["mcse_ref"] ** 2
    )
    return joined, z


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--agreement",
        action="store_true",
        help="also compare the shares of the default and 500 + 500 with a 4 x 5,000-draw run",
    )
    options = parser.parse_args()
    spec = WaveTruthSpec(markets=("DE", "FR"), brands=tuple(f"brand{i:02d}" for i in range(1, 9)))
    simulated = simulate_wave(options.seed, spec)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        simulated.write(tmp)
        raw = simulated.config(tmp, f"{tmp}/out") | {"wave": "2026-10"}
        prepared = prepare_wave(parse_config(raw))
        priors = prepared.config.model.priors
        # a joint family's model is fitted as one: its estimands are per item, left out here
        models = [s for s in prepared.specs if s.profile is None and s.joint is None]
        models = models[: options.models]
        print(f"{len(models)} models, settings: {', '.join(label for label, *_ in SETTINGS)}")
        compiled: set[tuple[str, str]] = set()
        shares: list[pd.DataFrame] = []
        for label, tune, draws, chains in SETTINGS:
            sampler = SamplerConfig(
                tune=tune,
                draws=draws,
                chains=chains,
                cores=options.cores,
                stored_draws=min(1000, chains * draws),
            )
            for model in models:
                unit = prepared.fit_unit(model)
                sample = cell_sampler(unit.lead, unit.layout, unit.counts, priors)
                if (model.market, model.formula) not in compiled:  # compiling is not timed
                    sample(sampler)
                    compiled.add((model.market, model.formula))
                started = time.perf_counter()
                posterior = sample(sampler)
                seconds = time.perf_counter() - started
                report = check_convergence(posterior, seconds)
                bulk, tail = estimand_ess(posterior, prepared, model.market)
                kinds = r_hat_by_kind(posterior)
                if options.agreement and label in AGREEMENT_SETTINGS:
                    shares.append(
                        share_means(posterior, prepared, model.market).assign(
                            setting=label, key=model.key
                        )
                    )
                estimand_rhat = estimand_r_hat(posterior, prepared, model.market)
                verdict = Verdict(
                    seconds,
                    report.steps_per_draw,
                    report.r_hat_max,
                    report.ess_bulk_min,
                    report.ess_tail_min,
                    report.divergences,
                    bulk,
                    tail,
                )
                rows.append(
                    {
                        "setting": label,
                        "key": model.key,
                        **verdict.__dict__,
                        "old": verdict.old_policy,
                        "new_failure": verdict.new_policy_failure,
                        **kinds,
                        "estimand_r_hat": estimand_rhat,
                    }
                )
            print(f"{label}: done", flush=True)
        if options.agreement:
            reference = SamplerConfig(
                tune=500,
                draws=5000,
                chains=4,
                cores=options.cores,
                stored_draws=1000,
                random_seed=SamplerConfig().random_seed + 1,  # independent of the runs above
            )
            for model in models:
                unit = prepared.fit_unit(model)
                sample = cell_sampler(unit.lead, unit.layout, unit.counts, priors)
                shares.append(
                    share_means(sample(reference), prepared, model.market).assign(
                        setting="reference", key=model.key
                    )
                )
            print("reference 4 x (500 + 5000): done", flush=True)
    table = pd.DataFrame(rows)
    print(
        f"\n{'setting':20} {'s/fit':>6} {'steps':>6} {'old pass':>9} {'new pass':>9}"
        f" {'r_hat':>6} {'est.ess':>8} {'par.ess':>8} {'div':>4} {'min est. ESS':>13}"
    )
    worst_kinds = table[table["new_failure"] == "r_hat"].groupby("setting")["worst"].value_counts()
    for label, *_ in SETTINGS:
        part = table[table["setting"] == label]
        failures = part["new_failure"].value_counts()
        print(
            f"{label:20} {part['seconds'].mean():6.2f} {part['steps_per_draw'].mean():6.1f}"
            f" {part['old'].mean():9.0%} {part['new_failure'].isna().mean():9.0%}"
            f" {failures.get('r_hat', 0):6d} {failures.get('estimand ess', 0):8d}"
            f" {failures.get('parameter ess', 0):8d} {failures.get('divergences', 0):4d}"
            f" {part[['estimand_bulk_min', 'estimand_tail_min']].min(axis=1).median():13.0f}"
        )

    # A looser variant for the planners: R-hat <= 1.01 on the published shares and the
    # parameters other than group sds, <= 1.05 on the group sds; the ESS rules as before.
    looser = (
        (table["estimand_r_hat"] <= 1.01)
        & (table["r_hat_other"] <= 1.01)
        & (table["r_hat_sd"] <= 1.05)
        & (table[["estimand_bulk_min", "estimand_tail_min"]].min(axis=1) >= 400)
        & (table["ess_bulk_min"] >= 100)
        & (table["divergences"] == 0)
    )
    print("\npass with R-hat <= 1.05 on group sds, <= 1.01 on shares and other parameters:")
    for label, *_ in SETTINGS:
        passed = looser[table["setting"] == label]
        print(f"  {label:20} {passed.mean():5.0%}")
    if options.agreement:
        estimates = pd.concat(shares, ignore_index=True)
        ref = estimates[estimates["setting"] == "reference"].set_index(["key", "group"])
        print("\nagreement with 4 x (500 + 5000), |a - b| <= 4 sqrt(mcse_a^2 + mcse_b^2):")
        for label in AGREEMENT_SETTINGS:
            run = estimates[estimates["setting"] == label].set_index(["key", "group"])
            joined, z = agreement(run, ref)
            print(
                f"  {label:20} {int((z <= 4).sum())} of {len(z)} estimates agree,"
                f" max z {z.max():.2f}, median mcse {joined['mcse'].median() * 100:.3f} pts"
            )
    print("\nthe parameter kind with the largest R-hat, in fits that failed on R-hat:")
    print(worst_kinds.to_string())


if __name__ == "__main__":
    main()
