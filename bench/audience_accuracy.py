"""How accurate are audiences on a profile variable (category users), against the truth?

Issue 22, "Accuracy you must measure and report": simulated waves whose profile variable
(``WaveTruthSpec.profile``: category users, P(user | census cell) a logit model of the
demographics; users more aware, more considering, ticking more associations) is not in the
census, from a panel biased on demographics only (selection ignorable given cell and profile).
Each seed's wave is fitted twice with real sampling (the config's default sampler):

MRP
    ``profiles: [category_user]``: the profile model per market and the question models with
    the profile as an effect (``profile_settings.predictor: true``, the default).
MRP, no profile effect
    ``profile_settings.predictor: false``: the question models on the census cells only; an
    audience then only reweights census cells by P(user | cell). The profile model's fit is
    reused (same output folder, same data and settings).

Both are scored against the exact truth, beside the two classical baselines every estimate
row carries: ``raked_mean`` (census-margin raking weights, ``misterp.mrp.raking.rake_weights``,
applied to the audience's respondents: raking within the audience) and ``raw_mean`` (the
audience's raw sample share). Audiences: ``category_users`` (the profile alone) and
``category_users_18_34`` (crossed with age); the census target groups are shown for reference.

Printed per seed and pooled over seeds:
- RMSE (percentage points) of each method per audience, and the ratios MRP / raking
  (goal <= 0.7) and MRP / raw (goal < 1);
- coverage of the published 90% intervals (``lower``, ``upper``) of the audience estimates
  (goal 85-95%);
- coverage of the audience sizes (``audiences.parquet``) against the true population share.

Run: ``.venv/bin/python bench/audience_accuracy.py`` (seeds 21-25, markets DE and FR, two
brands, 1,500 respondents per market: 80 estimates per audience; about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.config import parse_config
from misterp.mrp.simulate import ProfileTruth, SimulatedWave, WaveTruthSpec, simulate_wave
from misterp.mrp.wave import AUDIENCES_FILE
from misterp.pipeline.wave import run_wave_inline

WAVE = "2026-10"
KEYS = ["market", "question_id", "option", "target_group"]
#: Audiences on the profile, in the order printed; the census groups follow for reference.
AUDIENCES = ("category_users", "category_users_18_34")
CENSUS_GROUPS = ("all", "women_18_34", "high_education", "men_55_plus")
#: Methods scored: the column of the scored table each one's estimate is in.
METHODS = {
    "mrp": "mrp",
    "mrp_no_effect": "mrp_no_effect",
    "raked": "raked_mean",
    "raw": "raw_mean",
}


def spec_for(args: argparse.Namespace) -> WaveTruthSpec:
    """The simulated design: one or more markets, a few brands, the category-user profile."""
    return WaveTruthSpec(
        markets=tuple(args.markets),
        brands=tuple(f"brand{i:02d}" for i in range(1, args.brands + 1)),
        n_respondents=args.respondents,
        rare_brand=None,
        association_options=("innovative", "trustworthy"),
        profile=ProfileTruth(),
    )


def fit_both(simulated: SimulatedWave, tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Estimates with and without the profile effect, the audience sizes, and run facts."""
    folder = tmp / "input"
    simulated.write(str(folder))
    output = str(tmp / "results")
    raw = simulated.config(str(folder), output) | {"wave": WAVE}
    facts: dict[str, Any] = {}
    started = time.perf_counter()
    with_effect = run_wave_inline(parse_config(raw))
    facts["seconds_mrp"] = time.perf_counter() - started
    facts["converged_mrp"] = f"{with_effect.counts.converged}/{with_effect.counts.models}"
    sizes = pd.read_parquet(Path(output) / WAVE / AUDIENCES_FILE)
    started = time.perf_counter()
    without = run_wave_inline(parse_config(raw | {"profile_settings": {"predictor": False}}))
    facts["seconds_no_effect"] = time.perf_counter() - started
    facts["converged_no_effect"] = f"{without.counts.converged}/{without.counts.models}"
    columns = [*KEYS, "mean", "lower", "upper"]
    table = with_effect.estimates[[*columns, "raked_mean", "raw_mean", "n", "status"]].merge(
        without.estimates[columns], on=KEYS, suffixes=("", "_no_effect"), validate="one_to_one"
    )
    table = table.rename(columns={"mean": "mrp", "mean_no_effect": "mrp_no_effect"})
    table = table.merge(simulated.truth, on=KEYS, validate="one_to_one")
    return table, sizes.merge(simulated.audience_truth, on=["market", "target_group"]), facts


def _rmse(error: pd.Series) -> float:
    return float(np.sqrt(np.mean(error**2)) * 100)


def score(table: pd.DataFrame) -> pd.DataFrame:
    """RMSE per method, ratios and interval coverage per target group."""
    rows = []
    for group in (*AUDIENCES, *CENSUS_GROUPS):
        part = table[table["target_group"] == group]
        row: dict[str, Any] = {"target_group": group, "estimates": len(part)}
        for name, column in METHODS.items():
            row[name] = _rmse(part[column] - part["true_value"])
        row["mrp/raked"] = row["mrp"] / row["raked"]
        row["mrp/raw"] = row["mrp"] / row["raw"]
        row["no_effect/raked"] = row["mrp_no_effect"] / row["raked"]
        row["cover_mrp"] = _covered(part, "").mean()
        row["cover_no_effect"] = _covered(part, "_no_effect").mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _covered(part: pd.DataFrame, suffix: str) -> pd.Series:
    return (part[f"lower{suffix}"] <= part["true_value"]) & (
        part["true_value"] <= part[f"upper{suffix}"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[21, 22, 23, 24, 25])
    parser.add_argument("--markets", nargs="+", default=["DE", "FR"])
    parser.add_argument("--brands", type=int, default=2)
    parser.add_argument("--respondents", type=int, default=1500)
    args = parser.parse_args()
    spec = spec_for(args)
    tables, sizes, facts = [], [], []
    started = time.perf_counter()
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            table, size, fact = fit_both(simulate_wave(seed, spec), Path(tmp))
        tables.append(table.assign(seed=seed))
        sizes.append(size.assign(seed=seed))
        facts.append(fact | {"seed": seed})
    with pd.option_context("display.width", 160, "display.precision", 3):
        print(f"markets {args.markets}, {args.brands} brands, {args.respondents} respondents")
        print(pd.DataFrame(facts).to_string(index=False))
        for seed, table in zip(args.seeds, tables, strict=True):
            print(f"\nseed {seed}: RMSE (points), ratios, 90% interval coverage")
            print(score(table).to_string(index=False))
        pooled = pd.concat(tables, ignore_index=True)
        print(f"\npooled over seeds {', '.join(map(str, args.seeds))}")
        print(score(pooled).to_string(index=False))
        size = pd.concat(sizes, ignore_index=True)
        size = size[size["profiles"].notna()]
        size["covered"] = (size["lower"] <= size["true_share"]) & (
            size["true_share"] <= size["upper"]
        )
        print("\naudience sizes (population share) against the truth")
        shown = ["seed", "market", "target_group", "true_share", "mean", "lower", "upper"]
        print(size[[*shown, "covered"]].to_string(index=False))
        print(f"audience sizes covered: {int(size['covered'].sum())} of {len(size)}")
    print(f"\nbench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
