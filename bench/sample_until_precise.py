"""Sampling until precise against a fixed 4 x 1,000 draws: cost, pass rates, agreement (issue 23).

Fits the first ``--models`` fit units of a simulated wave (question models, conditional-base
models and joint families; the default model, nutpie, retries included) three ways, in one run:

- ``before``: 4 x (500 + 1,000) draws judged once, ESS >= 400 on every parameter (misterp
  before issue 23: ``check_every: null``, ``convergence.policy: all_parameters``);
- ``fixed, estimand policy``: the same fixed run under issue 23's policy;
- ``looks (default)``: judged after 250, 500, 750 and 1,000 draws per chain on the same
  chains, stopped at the first look that passes, warm-up 200 (misterp's defaults).

It prints per setting the seconds per fit (compiling excluded: a first fit per formula and
market is run untimed), the draws per chain the first attempt was judged on, the share of
fits that converged at once, reached the cap, were retried, and what limited them. With
``--agreement`` it also fits a 4 x 5,000-draw reference (another seed) and checks every
published share (each target group's census-weighted share, per item of a joint family)
against it: |a - b| <= 4 sqrt(mcse_a^2 + mcse_b^2).

Run: ``.venv/bin/python bench/sample_until_precise.py --models 40 --agreement`` (~10 minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import ConvergencePolicy, SamplerConfig
from misterp.fitting import FitResult, fit_with_policy
from misterp.mrp.config import parse_config
from misterp.mrp.estimands import published_shares
from misterp.mrp.joint import FitUnit
from misterp.mrp.model import cell_sampler
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.wave import unit_diagnostics
from sampling_policy import agreement  # bench/ is the script's folder


@dataclass(frozen=True)
class Setting:
    """One way of sampling: the sampler's looks and the convergence policy."""

    label: str
    check_every: int | None
    policy: ConvergencePolicy
    tune: int


SETTINGS = (
    Setting("before: fixed, all parameters", None, ConvergencePolicy.ALL_PARAMETERS, 500),
    Setting("fixed, estimand policy", None, ConvergencePolicy.ESTIMANDS, 500),
    Setting("looks (default)", 250, ConvergencePolicy.ESTIMANDS, SamplerConfig().tune),
)


def shares_with_mcse(unit: FitUnit, prepared: PreparedWave) -> Any:
    """An ``extract`` that keeps each published share's posterior mean and its MCSE."""
    import arviz as az

    shares = published_shares(
        unit, prepared.layouts[unit.lead.market] if unit.joint else unit.layout
    )

    def extract(posterior: Any, settings: SamplerConfig) -> Any:
        names, draws = shares(posterior)
        mcse = np.asarray(az.mcse(draws, method="mean", chain_axis=1, draw_axis=2))
        return pd.DataFrame({"estimand": names, "mean": draws.mean(axis=(1, 2)), "mcse": mcse})

    return extract


def fit_unit(prepared: PreparedWave, unit: FitUnit, sampler: SamplerConfig) -> FitResult:
    """One fit as the wave runs it (retries, the wave's diagnostics), keeping shares and MCSE."""
    config = prepared.config
    return fit_with_policy(
        cell_sampler(unit.lead, unit.layout, unit.counts, config.model.priors),
        shares_with_mcse(unit, prepared),
        key=unit.lead.key,
        sampler=sampler,
        thresholds=config.convergence,
        policy=config.retry,
        diagnose=unit_diagnostics(prepared, unit),
    )


def estimates_of(result: FitResult) -> pd.DataFrame:
    """The shares and MCSE a fit kept (its ``extract`` here is :func:`shares_with_mcse`)."""
    kept: Any = result.draws
    if not isinstance(kept, pd.DataFrame):
        raise RuntimeError(f"{result.key} {result.status.value}: {result.error}")
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=40, help="fit units (a family is one)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--agreement", action="store_true", help="also a 4 x 5,000 reference")
    options = parser.parse_args()
    spec = WaveTruthSpec(markets=("DE", "FR"), brands=tuple(f"brand{i:02d}" for i in range(1, 9)))
    simulated = simulate_wave(options.seed, spec)
    rows, shares = [], []
    with tempfile.TemporaryDirectory() as tmp:
        simulated.write(tmp)
        raw = simulated.config(tmp, f"{tmp}/out") | {"wave": "2026-10"}
        raw["model"] = raw.get("model", {}) | {"joint_questions": "multi"}  # batteries: families
        base = parse_config(raw)
        leads = prepared_leads(prepare_wave(base), options.models)
        print(
            f"{len(leads)} fit units: {sum(u.joint for u in leads)} joint families, "
            f"{sum(u.lead.base_question is not None for u in leads)} conditional on a base",
            flush=True,
        )
        for setting in SETTINGS:
            config = base.model_copy(
                update={
                    "convergence": base.convergence.model_copy(update={"policy": setting.policy})
                }
            )
            prepared = prepare_wave(config)
            sampler = SamplerConfig(
                cores=options.cores, check_every=setting.check_every, tune=setting.tune
            )
            warmed: set[tuple[str, str]] = set()
            for unit in prepared_leads(prepared, options.models):
                if (unit.lead.market, unit.lead.formula) not in warmed:  # compile, untimed
                    fit_unit(prepared, unit, sampler)
                    warmed.add((unit.lead.market, unit.lead.formula))
                started = time.perf_counter()
                result = fit_unit(prepared, unit, sampler)
                seconds = time.perf_counter() - started
                first = result.attempts[0]
                rows.append(
                    {
                        "setting": setting.label,
                        "key": unit.lead.key,
                        "seconds": seconds,
                        "status": result.status.value,
                        "attempts": len(result.attempts),
                        "first_draws": first.report.draws if first.report else np.nan,
                        "first_passed": first.status.value == "converged",
                        "limited_by": (first.limited_by or "none").split(" of ")[0],
                    }
                )
                if options.agreement and setting.check_every is not None:
                    shares.append(estimates_of(result).assign(setting="looks", key=unit.lead.key))
            print(f"{setting.label}: done", flush=True)
        if options.agreement:
            prepared = prepare_wave(base)
            reference = SamplerConfig(
                cores=options.cores,
                draws=5000,
                check_every=None,
                random_seed=SamplerConfig().random_seed + 1,  # independent of the runs above
            )
            for unit in prepared_leads(prepared, options.models):
                result = fit_unit(prepared, unit, reference)
                shares.append(estimates_of(result).assign(setting="reference", key=unit.lead.key))
            print("reference 4 x (500 + 5,000): done", flush=True)
    report(pd.DataFrame(rows), shares)


def prepared_leads(prepared: PreparedWave, count: int) -> list[FitUnit]:
    """``count`` fit units taken in turn from each kind of question (no profile models).

    Awareness (asked to everyone), association batteries (joint families, conditional on
    awareness) and consideration (conditional on awareness): every kind is among the first
    few, as issue 23's agreement check asks.
    """
    by_kind: dict[str, list[FitUnit]] = {}
    for key in prepared.fit_units(s.key for s in prepared.specs if s.profile is None):
        unit = prepared.fit_unit(prepared.spec(key))
        by_kind.setdefault(unit.lead.question_id.split("_")[0], []).append(unit)
    turns = [unit for group in zip(*by_kind.values(), strict=False) for unit in group]
    return turns[:count]


def report(table: pd.DataFrame, shares: list[pd.DataFrame]) -> None:
    before = table[table["setting"] == SETTINGS[0].label]["seconds"].sum()
    print(
        f"\n{'setting':32} {'s/fit':>6} {'x before':>9} {'draws':>6} {'pass 1st':>9}"
        f" {'at cap':>7} {'retried':>8} {'converged':>10}"
    )
    for setting in SETTINGS:
        part = table[table["setting"] == setting.label]
        at_cap = (part["first_draws"] >= SamplerConfig().draws).mean()
        print(
            f"{setting.label:32} {part['seconds'].mean():6.2f}"
            f" {part['seconds'].sum() / before:9.2f} {part['first_draws'].mean():6.0f}"
            f" {part['first_passed'].mean():9.0%} {at_cap:7.0%}"
            f" {(part['attempts'] > 1).mean():8.0%} {(part['status'] == 'converged').mean():10.0%}"
        )
    looks = table[table["setting"] == SETTINGS[-1].label]
    print("\nlooks (default): first attempt stopped at draws per chain")
    print(looks["first_draws"].astype(int).value_counts().sort_index().to_string())
    print("what limited the first attempt, per setting:")
    print(table.groupby("setting")["limited_by"].value_counts().to_string())
    if shares:
        estimates = pd.concat(shares, ignore_index=True)
        run = estimates[estimates["setting"] == "looks"].set_index(["key", "estimand"])
        ref = estimates[estimates["setting"] == "reference"].set_index(["key", "estimand"])
        joined, z = agreement(run, ref)
        print(
            f"\nagreement with 4 x (500 + 5,000): {int((z <= 4).sum())} of {len(z)} published "
            f"shares of {joined.index.get_level_values('key').nunique()} fits within 4 MCSE, "
            f"max z {z.max():.2f}, median mcse {joined['mcse'].median() * 100:.3f} pts"
        )


if __name__ == "__main__":
    main()
