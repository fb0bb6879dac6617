"""False arrows and power of the flag rules at wave scale, on simulated changes with known truth.

A wave of the size the issue names: ``--models`` models (1,000) x 5 target groups, one of about
1,000 respondents (``all``), two of about 300 and two of about 100. Each estimate's true share
is drawn uniformly from 10-60%; between two waves it stays put or, for ``--changed`` of the
estimates (5%), moves by 3, 5 or 10 points (a third each, sign at random, kept within 2-98%).
Each wave's posterior of an estimate is the conjugate one of a simple random sample of the
group (Beta(1 + yes, 1 + no), ``--draws`` draws): a calibrated posterior, what the issue-12
bench measured the real pipeline's to be (90% change intervals covering 89%; README "Tracking
accuracy"). The changes' draws are compared exactly as ``changes.parquet`` compares them
(``compare_draws`` summaries, then ``apply_flag_rule`` over the whole wave).

The rules
---------
- ``per_estimate``: P(up) or P(down) >= 0.975 (two-sided 95%), the rule before issue 24.
- ``fdr q``: the Bayesian false-discovery rule at q (0.05, 0.10, 0.20), the prior of the
  wave's changes learnt from them.
- ``fdr 0.10 + min 2pt``: the same with ``min_change`` 0.02 (a flag says the change exceeds
  2 points; a true change of 2 points or less flagged counts as false).
- ``naive fdr 0.10``: the false-discovery rule on the draws' own P(up)/P(down) (flat priors,
  no learnt "no change"): shown to say why the prior is learnt.

What is printed
---------------
(a) no true change: share of waves with any false flag, false flags per wave (mean).
(b) 5% changed: realised false-discovery proportion (false flags / flags; 0 for a wave with
    none) averaged over the seeds, next to q; flags per wave; power (share of true changes
    flagged in the right direction) by change size and group size; the ideal bound: a
    two-sided 5% test that knows which estimates to test, with the group's respondents as a
    simple random sample at p = 0.5 (the last column of the issue-12 table).

Run from the repository root: ``.venv/bin/python bench/flag_rules.py --seeds 20``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from misterp.mrp.config import FlagRule, FlagSettings, TrackingConfig
from misterp.tracking.changes import apply_flag_rule, compare_draws
from misterp.tracking.flags import flag_directions

#: Target groups of a wave and their respondents per wave.
GROUPS: dict[str, int] = {"all": 1000, "g300a": 300, "g300b": 300, "g100a": 100, "g100b": 100}
SIZES = (100, 300, 1000)
MAGNITUDES = (0.03, 0.05, 0.10)


@dataclass(frozen=True)
class Rule:
    """A flag rule of the bench: its name and settings (None: the naive rule)."""

    name: str
    settings: FlagSettings | None


RULES = (
    Rule("per_estimate 95%", FlagSettings(rule=FlagRule.PER_ESTIMATE)),
    Rule("fdr 0.05", FlagSettings(q=0.05)),
    Rule("fdr 0.10", FlagSettings(q=0.10)),
    Rule("fdr 0.20", FlagSettings(q=0.20)),
    Rule("fdr 0.10 + min 2pt", FlagSettings(q=0.10, min_change=0.02)),
    Rule("naive fdr 0.10", None),
)


def simulate_wave(
    rng: np.random.Generator, models: int, changed: float, draws: int
) -> pd.DataFrame:
    """One pair of waves: per model x group the true change and the change's summary."""
    rows = []
    for group, n in GROUPS.items():
        before = rng.uniform(0.10, 0.60, models)
        moves = rng.random(models) < changed
        size = rng.choice(MAGNITUDES, models)
        sign = rng.choice([-1.0, 1.0], models)
        after = np.clip(before + np.where(moves, sign * size, 0.0), 0.02, 0.98)
        yes_then = rng.binomial(n, before)
        yes_now = rng.binomial(n, after)
        then = rng.beta(1 + yes_then[:, None], 1 + n - yes_then[:, None], (models, draws))
        now = rng.beta(1 + yes_now[:, None], 1 + n - yes_now[:, None], (models, draws))
        for i in range(models):
            summary = compare_draws(now[i], then[i], min_change=0.02)
            rows.append(
                {
                    "group": group,
                    "n": n,
                    "truth": after[i] - before[i],
                    "size": size[i] if moves[i] else 0.0,
                    "mean": summary.mean,
                    "sd": summary.sd,
                    "p_up": summary.p_up,
                    "p_down": summary.p_down,
                    "p_up_2pt": summary.p_up_beyond,
                    "p_down_2pt": summary.p_down_beyond,
                }
            )
    return pd.DataFrame(rows)


def flags_of(wave: pd.DataFrame, rule: Rule) -> np.ndarray:
    """Direction per row (+1, -1, 0) under ``rule``, the wave as one set of comparisons."""
    if rule.settings is None:
        naive = FlagSettings(q=0.10)
        return flag_directions(wave["p_up"], wave["p_down"], naive).direction
    two = rule.settings.min_change > 0
    rows = pd.DataFrame(
        {
            "reference": "previous",
            "comparable": True,
            "mean": wave["mean"],
            "sd": wave["sd"],
            "_p_up_beyond": wave["p_up_2pt"] if two else wave["p_up"],
            "_p_down_beyond": wave["p_down_2pt"] if two else wave["p_down"],
        }
    )
    flagged = apply_flag_rule(rows, TrackingConfig(flags=rule.settings))["flag"]
    return flagged.map({"up": 1, "down": -1, "steady": 0}).to_numpy(int)


def false_flags(wave: pd.DataFrame, direction: np.ndarray, rule: Rule) -> np.ndarray:
    """Flags that are wrong: no change (beyond min_change) in the flagged direction."""
    floor = rule.settings.min_change if rule.settings is not None else 0.0
    truth = wave["truth"].to_numpy()
    right = np.where(direction > 0, truth > floor + 1e-12, truth < -floor - 1e-12)
    return (direction != 0) & ~right


def ideal_power(size: float, n: int) -> float:
    """Two-sided 5% test of a known estimate: SRS of ``n`` at p = 0.5 in both waves."""
    se = np.sqrt(2 * 0.25 / n)
    z = norm.ppf(0.975)
    return float(norm.cdf(size / se - z) + norm.cdf(-size / se - z))


def main() -> None:
    """Run the bench and print the tables (markdown)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--changed", type=float, default=0.05)
    args = parser.parse_args()
    started = time.perf_counter()
    null_rows, mixed_rows, power_rows = [], [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for changed, into in ((0.0, null_rows), (args.changed, mixed_rows)):
            wave = simulate_wave(rng, args.models, changed, args.draws)
            for rule in RULES:
                direction = flags_of(wave, rule)
                wrong = false_flags(wave, direction, rule)
                flags = int((direction != 0).sum())
                into.append(
                    {
                        "rule": rule.name,
                        "seed": seed,
                        "flags": flags,
                        "false": int(wrong.sum()),
                        "fdp": wrong.sum() / flags if flags else 0.0,
                    }
                )
                if changed:
                    moved = wave["size"] > 0
                    hit = np.sign(wave["truth"]) == direction
                    for (size, n), part in (
                        wave[moved].assign(hit=hit[moved]).groupby(["size", "n"])
                    ):
                        power_rows.append(
                            {
                                "rule": rule.name,
                                "size": size,
                                "n": n,
                                "hits": part["hit"].sum(),
                                "count": len(part),
                            }
                        )
    comparisons = args.models * len(GROUPS)
    print(
        f"{args.seeds} seeds x {comparisons} comparisons a wave ({args.models} models x "
        f"{len(GROUPS)} groups), {args.draws} draws, {time.perf_counter() - started:.0f} s\n"
    )
    null = pd.DataFrame(null_rows).groupby("rule", sort=False)
    print("(a) no true change anywhere\n")
    print("| rule | waves with any false flag | false flags per wave |\n|---|---|---|")
    for name, part in null:
        print(f"| {name} | {(part['false'] > 0).mean():.0%} | {part['false'].mean():.1f} |")
    mixed = pd.DataFrame(mixed_rows).groupby("rule", sort=False)
    print(f"\n(b) {args.changed:.0%} of estimates truly changed (3, 5 or 10 points)\n")
    print("| rule | realised FDP, mean over seeds (sd) | flags per wave | false flags per wave |")
    print("|---|---|---|---|")
    for name, part in mixed:
        print(
            f"| {name} | {part['fdp'].mean():.3f} ({part['fdp'].std():.3f}) | "
            f"{part['flags'].mean():.1f} | {part['false'].mean():.1f} |"
        )
    power = (
        pd.DataFrame(power_rows).groupby(["rule", "n", "size"], sort=False)[["hits", "count"]].sum()
    )
    print("\npower: share of true changes flagged in the right direction\n")
    header = " | ".join(f"n={n} {int(s * 100)}pt" for n in SIZES for s in MAGNITUDES)
    print(f"| rule | {header} |\n|---|" + "---|" * (len(SIZES) * len(MAGNITUDES)))
    for rule in RULES:
        cells = [
            f"{power.loc[(rule.name, n, s), 'hits'] / power.loc[(rule.name, n, s), 'count']:.0%}"
            for n in SIZES
            for s in MAGNITUDES
        ]
        print(f"| {rule.name} | " + " | ".join(cells) + " |")
    bound = [f"{ideal_power(s, n):.0%}" for n in SIZES for s in MAGNITUDES]
    print("| ideal bound (issue 12) | " + " | ".join(bound) + " |")


if __name__ == "__main__":
    main()
