"""Which MRP formula should be the default: main effects, or main effects plus interactions?

For each seed, ``misterp.mrp.simulate.simulate_wave`` draws one market whose true cell
probabilities have an age x gender interaction (``interaction_sd={("age", "gender"): 0.5}``:
young women differ from what their age and gender add up to, per item) on top of the main
effects, and samples it through the default biased online panel (the young and the highly
educated over-represented). Three brands with awareness, consideration and two association
options each: 12 models per wave. No brand is pinned rare: a rare brand's association bases in
a small target group (under 10 respondents) add errors of 10-40 points whichever the formula,
and a handful of those decide an RMSE. Each formula variant fits the wave with the real pipeline in
this process (``misterp.pipeline.wave.run_wave_inline``), and the published estimates are scored
against the exact truth, beside the raw (unweighted) and raked shares of the same estimates
file.

Variants
--------
main
    Main effects only, ``1 + gender + (1|age) + (1|education) + (1|region)`` (the default
    formula before the interaction).
age:gender
    ``main + (1|age:gender)`` with the sd ~ HalfNormal(group_sigma) of the other group terms.
age:gender sd.5
    The same with the interaction's sd ~ Gamma(2, 4) (mean 0.5): the previous default model.
    These first variants keep that model's other priors (``OLD``).
pairwise
    ``age:gender + (1|age:education)``: a second pair a tracker might add without knowing
    which are real (the truth has only age x gender); what an unneeded term costs.
sd gamma, sd gamma 1
    ``age:gender sd.5`` with the main group effects' sds zero-avoiding too
    (``priors.group_sd: gamma``): Gamma(2, 4) (mean 0.5) or Gamma(2, 2) (mean 1) instead of
    HalfNormal(1). With few levels (4 education bands, 5 regions) the HalfNormal sd's posterior
    reaches into the funnel at 0, the parameters with the lowest ESS and the highest R-hat.
    The simulator's true sds are 0.3-0.7 (mean 0.5 is near them): ``--effect-scale 2`` tests
    the prior against effects twice as large.
margins, margins sd gamma
    ``age:gender sd.5`` and ``sd gamma`` with the interaction's levels summing to zero along
    age and along gender (``priors.interaction_zero_sum: margins``, the pure interaction)
    instead of once over all ten pairs, which leaves the interaction able to mimic the age
    and gender main effects.
default
    misterp's default model as it is now (``margins sd gamma``).
joint, joint brands
    ``default`` fitted as joint models (issue 14, item 3): ``joint`` makes each brand's
    association battery one model (``model.joint_questions: multi``), ``joint brands`` all
    brands' batteries one model (``model.joint_families``): shared demographic effects plus
    partially pooled deviations per item. Give them something to share with
    ``--association-shared`` (the simulator's common profile of the association items) and a
    small base with ``--rare-awareness``; ``--associations`` sets the options per battery.
rw-age, rw-age + age:gender sd.5
    ``main`` and ``age:gender sd.5`` with a random-walk prior across the age bands in their
    census order (``priors.random_walk``, Gao et al. 2021) instead of exchangeable bands.
    The simulator's age effects are independent per band (the worst case for a walk) unless
    ``--smooth-age`` makes them a random walk too (adjacent bands alike, as in real data).

What is printed (one row per variant; raw and raked have no interval or fit)
----------------------------------------------------------------------------
groups, aware, consider, assoc
    RMSE (percentage points) of the posterior mean against the truth over the target groups
    (not ``all``): all question kinds, then each kind.
all
    RMSE over the national (``all``) estimates.
/raked
    ``groups`` divided by raking's ``groups``: < 1 means better than raking.
cover90
    Share of 90% intervals (all estimates, national and groups) that cover the truth.
retried
    Share of fits that needed more than one attempt (divergences or low ESS); a joint family
    is one fit.
steps
    Leapfrog steps per draw at a fit's first attempt, averaged over fits: the cost of a draw
    whatever the machine's load.
s/model
    Fit seconds per model (the fit records' own timing, compilation included); a joint fit's
    seconds are divided among its items.

Run from the repository root: ``.venv/bin/python bench/model_comparison.py`` (about 10 minutes on
2 cores with the defaults); ``--seeds``, ``--respondents``, ``--interaction-sd`` (0: a truth
without interactions, to see what the extra terms cost when there is nothing to find),
``--smooth-age``, ``--csv``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.config import parse_config
from misterp.mrp.simulate import (
    DEFAULT_EFFECT_SD,
    DEFAULT_LEVELS,
    SimulatedWave,
    WaveTruthSpec,
    simulate_wave,
)
from misterp.pipeline.wave import run_wave_inline

MARKET = "DE"
WAVE = "2026-01"
BRANDS = ("brand01", "brand02", "brand03")
ASSOCIATIONS = ("trustworthy", "good_value")
PAIR = ("age", "gender")
MAIN = "p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region)"
#: The age bands in census order, as a user declares them for the random-walk prior.
AGE_WALK = {"random_walk": {"age": list(DEFAULT_LEVELS["age"])}}
#: ``model.joint_families`` of the "joint brands" variant: filled in per wave with every
#: association question (one family per market over all brands' batteries).
ALL_BATTERIES = "every assoc_ question"
#: Variant name: formula, priors (``model.priors`` overrides; {} = misterp's defaults) and
#: other ``model`` settings.
#: The priors of the previous default model (HalfNormal(1) group sds,
#: the interaction summing to zero once over all pairs), which the variants before
#: ``margins sd gamma`` were measured with.
OLD = {"group_sd": "half_normal", "group_sigma": 1.0, "interaction_zero_sum": "total"}
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "main": (MAIN, OLD, {}),
    "age:gender": (f"{MAIN} + (1|age:gender)", OLD | {"interaction_sigma": None}, {}),
    "age:gender sd.5": (f"{MAIN} + (1|age:gender)", OLD, {}),
    "pairwise": (f"{MAIN} + (1|age:gender) + (1|age:education)", OLD, {}),
    "sd gamma": (f"{MAIN} + (1|age:gender)", OLD | {"group_sd": "gamma", "group_sigma": 0.5}, {}),
    "sd gamma 1": (
        f"{MAIN} + (1|age:gender)",
        OLD | {"group_sd": "gamma", "group_sigma": 1.0},
        {},
    ),
    "margins": (f"{MAIN} + (1|age:gender)", OLD | {"interaction_zero_sum": "margins"}, {}),
    "margins sd gamma": (
        f"{MAIN} + (1|age:gender)",
        {"interaction_zero_sum": "margins", "group_sd": "gamma", "group_sigma": 0.5},
        {},
    ),
    "default": (f"{MAIN} + (1|age:gender)", {}, {}),
    "rw-age": (MAIN, OLD | AGE_WALK, {}),
    "rw-age + age:gender sd.5": (f"{MAIN} + (1|age:gender)", OLD | AGE_WALK, {}),
    "joint": (f"{MAIN} + (1|age:gender)", {}, {"joint_questions": "multi"}),
    "joint brands": (
        f"{MAIN} + (1|age:gender)",
        {},
        {"joint_families": {"associations": ALL_BATTERIES}},
    ),
}
KINDS = ("aware", "consider", "assoc")
KEYS = ["market", "question_id", "option", "target_group"]


def truth_spec(
    respondents: int,
    interaction_sd: float,
    smooth_age: bool = False,
    associations: int = len(ASSOCIATIONS),
    association_shared: float = 0.0,
    rare_awareness: float | None = None,
    effect_scale: float = 1.0,
) -> WaveTruthSpec:
    """One market, three brands, two association options (by default): 12 models per wave."""
    options = (
        ASSOCIATIONS
        if associations == len(ASSOCIATIONS)
        else tuple(f"attribute{k:02d}" for k in range(1, associations + 1))
    )
    return WaveTruthSpec(
        smooth_effects=("age",) if smooth_age else (),
        markets=(MARKET,),
        brands=BRANDS,
        n_respondents=respondents,
        association_options=options,
        association_shared=association_shared,
        rare_brand=None if rare_awareness is None else BRANDS[-1],
        rare_awareness=rare_awareness or 0.07,
        interaction_sd={PAIR: interaction_sd} if interaction_sd > 0 else {},
        effect_sd={dim: sd * effect_scale for dim, sd in DEFAULT_EFFECT_SD.items()},
    )


def fit_variant(
    wave: SimulatedWave,
    input_dir: Path,
    output: Path,
    variant: str,
    model: tuple[str, dict[str, Any], dict[str, Any]],
) -> pd.DataFrame:
    """Fit the wave with one formula and priors; its estimates beside the truth, with seconds.

    ``fit_seconds`` is per model: a joint fit's seconds divided among its items; ``fit`` names
    the fit a model came from (its own key, or the joint family's), so retries count per fit.
    """
    formula, priors, settings = model
    if settings.get("joint_families") == {"associations": ALL_BATTERIES}:
        batteries = sorted({q for q in wave.questions["question_id"] if q.startswith("assoc_")})
        settings = {"joint_families": {"associations": batteries}}
    config = wave.config(str(input_dir), str(output)) | {
        "wave": WAVE,
        "model": {"formula": formula, "priors": priors, **settings},
    }
    outcome = run_wave_inline(parse_config(config))
    specs = {m.key: m.spec for m in outcome.manifest.models}
    unit = {
        key: f"{s['market']}/{s['joint']}" if s.get("joint") else key for key, s in specs.items()
    }
    size = pd.Series(unit).value_counts()
    seconds = {m.key: (m.seconds or np.nan) / size[unit[m.key]] for m in outcome.manifest.models}
    steps = {
        m.key: m.attempts[0].report.steps_per_draw
        if m.attempts and m.attempts[0].report
        else np.nan
        for m in outcome.manifest.models
    }
    estimates = outcome.estimates.merge(wave.truth, on=KEYS, validate="one_to_one")
    key = estimates["market"] + "/" + estimates["question_id"] + "/" + estimates["option"]
    return estimates.assign(
        variant=variant, fit_seconds=key.map(seconds), fit=key.map(unit), steps=key.map(steps)
    )


def _rmse(error: pd.Series) -> float:
    return float(np.sqrt(np.mean(np.square(error)))) * 100 if len(error) else float("nan")


def score(estimates: pd.DataFrame, column: str) -> dict[str, float]:
    """RMSE (points) of ``column`` against the truth: target groups, per kind, national."""
    error = estimates[column] - estimates["true_value"]
    groups = estimates["target_group"] != "all"
    kind = estimates["question_id"].str.split("_").str[0]
    row = {"groups": _rmse(error[groups])}
    for name in KINDS:
        row[name] = _rmse(error[groups & (kind == name)])
    row["all"] = _rmse(error[~groups])
    return row


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (and raw, raked): the figures of the module docstring."""
    fitted = [v for v in VARIANTS if v in set(table["variant"])]
    first = table[table["variant"] == fitted[0]]
    rows = {"raw": score(first, "raw_mean"), "raked": score(first, "raked_mean")}
    for variant in fitted:
        part = table[table["variant"] == variant]
        row = score(part, "mean")
        covered = (part["lower"] <= part["true_value"]) & (part["true_value"] <= part["upper"])
        models = part.drop_duplicates(["seed", "market", "question_id", "option"])
        fits = part.drop_duplicates(["seed", "fit"])
        row["cover90"] = float(covered.mean())
        row["retried"] = float((fits["attempts"] > 1).mean())
        row["s/model"] = float(models["fit_seconds"].mean())
        row["steps"] = float(fits["steps"].mean())
        rows[variant] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.insert(4, "/raked", out["groups"] / out.loc["raked", "groups"])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate, fit every variant, score and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (populations)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--respondents", type=int, default=2000, help="panel sample size")
    parser.add_argument(
        "--interaction-sd",
        type=float,
        default=0.5,
        help="sd of the true age x gender interaction (0: a main-effects truth)",
    )
    parser.add_argument(
        "--smooth-age",
        action="store_true",
        help="true age effects follow a random walk across the bands (default: independent)",
    )
    parser.add_argument(
        "--associations", type=int, default=len(ASSOCIATIONS), help="options per battery"
    )
    parser.add_argument(
        "--association-shared",
        type=float,
        default=0.0,
        help="share of the demographic effects all association items have in common",
    )
    parser.add_argument(
        "--rare-awareness",
        type=float,
        help=f"pin {BRANDS[-1]}'s awareness (a small association base); default: not pinned",
    )
    parser.add_argument(
        "--effect-scale",
        type=float,
        default=1.0,
        help="multiply the true demographic effects' sds (0.3-0.7 on the logit scale)",
    )
    parser.add_argument("--output", type=Path, help="keep the waves here (default: temporary)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="fit only these (default: all)"
    )
    parser.add_argument("--csv", type=Path, help="write every estimate beside its truth here")
    args = parser.parse_args(argv)
    logging.getLogger("misterp").setLevel(logging.WARNING)
    command = " ".join([".venv/bin/python", "bench/model_comparison.py", *sys.argv[1:]])

    spec = truth_spec(
        args.respondents,
        args.interaction_sd,
        args.smooth_age,
        args.associations,
        args.association_shared,
        args.rare_awareness,
        args.effect_scale,
    )
    root = args.output or Path(tempfile.mkdtemp(prefix="model-comparison-"))
    started = time.perf_counter()
    parts = []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            wave = simulate_wave(seed, spec)
            input_dir = root / f"seed{seed}" / "input"
            wave.write(str(input_dir))
            for variant, model in VARIANTS.items():
                if args.variants and variant not in args.variants:
                    continue
                folder = root / f"seed{seed}" / variant.replace(" ", "_")
                fitted = fit_variant(wave, input_dir, folder, variant, model)
                parts.append(fitted.assign(seed=seed))
                models = fitted.drop_duplicates(["question_id", "option"])
                converged = int((models["status"] == "converged").sum())
                print(
                    f"  seed {seed} {variant:<10} {models['fit_seconds'].sum():5.0f} s fitting, "
                    f"{converged}/{len(models)} converged",
                    flush=True,
                )
    finally:
        if args.output is None:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.concat(parts, ignore_index=True)
    if args.csv:
        table.to_csv(args.csv, index=False)

    interaction = ", ".join(f"{a} x {b} sd {sd}" for (a, b), sd in spec.interaction_sd.items())
    n_variants = table["variant"].nunique()
    print()
    print(f"command:  {command}")
    print(
        f"design:   {args.seeds} seeds x {n_variants} variants, 1 market, {len(BRANDS)} brands, "
        f"{args.respondents} respondents, biased panel; truth with "
        f"{interaction or 'main effects only'}"
        f"{', age effects a random walk' if args.smooth_age else ''}; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    groups = ", ".join(spec.target_groups)
    print(f"scored:   {len(table) // n_variants} estimates per variant; groups: {groups}")
    print("RMSE in percentage points; /raked = groups RMSE / raking's groups RMSE")
    print()
    print(summary(table).to_string(float_format=lambda v: f"{v:.2f}", na_rep="-"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
