"""Accuracy of wave-on-wave change detection, against simulated waves with known true changes.

For each seed, ``misterp.mrp.simulate.simulate_waves`` draws one population (one market, two
brands: awareness, consideration and one association option each, so 6 models per wave) and K
consecutive waves from it, each a fresh sample from the same biased online panel. Between
consecutive waves some estimates change by a declared amount and the rest stay put; the truth
of every estimate in every wave is known exactly. Each wave is fitted with the real pipeline in
this process (``misterp.pipeline.wave.run_wave_inline``), and every estimate's change between
consecutive waves is computed from the published draws
(``OUTPUT/WAVE/draws/MARKET/QUESTION/OPTION.parquet``) with
``misterp.tracking.changes.compare_draws``, the rule the pipeline's ``changes.parquet`` uses.

What is printed
---------------
(a) false alarms
    Share of comparisons whose true change is exactly 0 that are flagged (two-sided at 95%:
    P(up) or P(down) >= 0.975). Target <= 5%. The rate of the earlier one-sided rule
    (P(up) or P(down) >= 0.95, about 10% on a calibrated posterior) is printed beside it.
(b) calibration
    Share of all comparisons whose 90% interval of the change covers the true change; also
    split into zero, declared and induced changes. Target 85-95%.
(c) power
    Share of declared changes of 3, 5 and 10 points flagged in the right direction, by
    target-group size: ``small`` (men_45_plus, ~100 of 1,000 respondents), ``medium``
    (women_18_34, ~320) and ``large`` (all, 1,000). Binned by the declared delta: where an
    awareness change moves the base of an association change in the same pair, the true
    change differs from it by a little.
(e) shrinkage
    Median estimated / true change of the declared changes, by group size.
(f) single waves
    Share of each wave's own 90% intervals covering the truth, by target group: the changes
    are made of these.

Every figure comes with the number of comparisons behind it: with a few dozen comparisons a
rate is uncertain by several points (the table prints a 95% Wilson interval). Comparisons
within one pair of waves share the fits, so they are not independent, and the intervals are
if anything too narrow.

The true changes (``plan_changes``): in each pair of waves three of the six items change and
three stay put, rotating between pairs; of the three, two change in both small and medium
groups (disjoint, so each group moves by exactly its delta) and one in the whole population.
Magnitudes cycle through 3, 5 and 10 points within each size, the sign points towards 50%.
Changes in a group also move ``all`` and, for awareness, the brand's association truth (its
base changes): those are "induced" changes, exact but not declared, used for calibration only.

Run from the repository root: ``.venv/bin/python bench/change_accuracy.py --seeds 3 --waves 3``.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.config import parse_config
from misterp.mrp.simulate import SimulatedSeries, TrueChange, WaveTruthSpec, simulate_waves
from misterp.pipeline.wave import run_wave_inline

MARKET = "DE"
BRANDS = ("brand01", "brand02")
ASSOCIATION = "trustworthy"
#: Target groups by size, with roughly 100, 320 and 1,000 of 1,000 panel respondents.
SIZE_GROUPS = {"small": "men_45_plus", "medium": "women_18_34", "large": "all"}
TARGET_GROUPS = {
    "men_45_plus": {"gender": ["male"], "age": ["45-54", "55+"]},
    "women_18_34": {"gender": ["female"], "age": ["18-24", "25-34"]},
}
MAGNITUDES = (0.03, 0.05, 0.10)
PROBABILITY = 0.95
INTERVAL = 0.90
ZERO = 1e-12  # unchanged truth is bitwise equal; this only absorbs the subtraction


# -- change rule ------------------------------------------------------------------------------


def _change_rule() -> tuple[Callable[..., Any], str]:
    from misterp.tracking.changes import compare_draws

    return compare_draws, "misterp.tracking.changes.compare_draws"


# -- the simulated series ---------------------------------------------------------------------


def truth_spec(respondents: int) -> WaveTruthSpec:
    """One market, two brands, one association option: 6 models per wave."""
    return WaveTruthSpec(
        markets=(MARKET,),
        brands=BRANDS,
        n_respondents=respondents,
        association_options=(ASSOCIATION,),
        rare_brand=None,
        target_groups=TARGET_GROUPS,
    )


def _items() -> list[tuple[str, str]]:
    out = []
    for brand in BRANDS:
        out += [(f"aware_{brand}", "yes"), (f"consider_{brand}", "yes")]
        out.append((f"assoc_{brand}", ASSOCIATION))
    return out


def plan_changes(
    seeds: Sequence[int], labels: Sequence[str], spec: WaveTruthSpec
) -> dict[int, list[TrueChange]]:
    """The declared changes of every seed (see the module docstring for the design)."""
    items = _items()
    cycle = {size: itertools.cycle(MAGNITUDES) for size in SIZE_GROUPS}
    plan: dict[int, list[TrueChange]] = {}
    for seed in seeds:
        base = simulate_waves(seed, spec, labels[:1]).waves[labels[0]].truth
        share = {(r.question_id, r.option, r.target_group): r.true_value for r in base.itertuples()}
        changes = []
        for pair, wave in enumerate(labels[1:]):
            start = (3 * (pair + seed)) % len(items)
            chosen = [items[(start + k) % len(items)] for k in range(3)]
            cases = [(chosen[0], "small"), (chosen[0], "medium"), (chosen[1], "small")]
            cases += [(chosen[1], "medium"), (chosen[2], "large")]
            for (question, option), size in cases:
                group = SIZE_GROUPS[size]
                now = share[question, option, group]
                delta = next(cycle[size]) * (1 if now < 0.5 else -1)
                share[question, option, group] = now + delta
                changes.append(TrueChange(question, option, group, delta, wave))
        plan[seed] = changes
    return plan


# -- fitting and comparing --------------------------------------------------------------------


@dataclass
class _Fitted:
    output: Path
    seconds: list[float]
    converged: int
    models: int
    levels: pd.DataFrame  # every wave's estimates beside their truth


def fit_series(
    series: SimulatedSeries,
    root: Path,
    seed: int,
    sampler: dict[str, Any],
    convergence: dict[str, Any] | None = None,
) -> _Fitted:
    """Fit every wave with the real pipeline, in this process."""
    output = root / f"seed{seed}" / "out"
    seconds, converged, models = [], 0, 0
    levels = []
    for label, wave in series.waves.items():
        input_dir = root / f"seed{seed}" / "input" / label
        wave.write(str(input_dir))
        config = wave.config(str(input_dir), str(output))
        config["wave"] = label
        if sampler:
            config["sampler"] = sampler
        if convergence:
            config["convergence"] = convergence
        started = time.perf_counter()
        outcome = run_wave_inline(parse_config(config))
        seconds.append(time.perf_counter() - started)
        counts = outcome.counts
        keys = ["market", "question_id", "option", "target_group"]
        level = outcome.estimates[[*keys, "lower", "upper"]].merge(
            wave.truth, on=keys, validate="one_to_one"
        )
        levels.append(level.assign(seed=seed, wave=label))
        converged += counts.converged
        models += counts.models
        print(
            f"  seed {seed} wave {label}: {seconds[-1]:.0f} s, {counts.converged}/"
            f"{counts.models} converged",
            flush=True,
        )
    return _Fitted(output, seconds, converged, models, pd.concat(levels, ignore_index=True))


def _draws(output: Path, wave: str, question: str, option: str) -> pd.DataFrame:
    return pd.read_parquet(output / wave / "draws" / MARKET / question / f"{option}.parquet")


def compare_series(
    series: SimulatedSeries, output: Path, seed: int, compare: Callable[..., Any]
) -> pd.DataFrame:
    """One row per estimate x consecutive pair: true change, the rule's verdict and interval."""
    counts = {
        label: {
            group: int(_in_group(wave.respondents, defn).sum())
            for group, defn in {"all": {}, **TARGET_GROUPS}.items()
        }
        for label, wave in series.waves.items()
    }
    declared = {(c.from_wave, c.question_id, c.option, c.target_group): c for c in series.changes}
    rows = []
    for row in series.true_changes.itertuples():
        current = _draws(output, row.wave, row.question_id, row.option)
        reference = _draws(output, row.reference_wave, row.question_id, row.option)
        cur = current[current["target_group"] == row.target_group].sort_values("draw")
        ref = reference[reference["target_group"] == row.target_group].sort_values("draw")
        result = compare(
            cur["value"].to_numpy(),
            ref["value"].to_numpy(),
            probability=PROBABILITY,
            interval=INTERVAL,
        )
        true = float(row.true_change)
        kind = "zero" if abs(true) < ZERO else "declared" if row.declared else "induced"
        rows.append(
            {
                "seed": seed,
                "pair": f"{row.reference_wave}->{row.wave}",
                "question_id": row.question_id,
                "option": row.option,
                "target_group": row.target_group,
                "kind": kind,
                "true_change": true,
                "declared_change": (
                    declared[row.wave, row.question_id, row.option, row.target_group].delta
                    if row.declared
                    else math.nan
                ),
                "mean": result.mean,
                "lower": result.lower,
                "upper": result.upper,
                "p_up": result.p_up,
                "p_down": result.p_down,
                "flag": result.flag.value,
                "respondents": min(
                    counts[row.wave][row.target_group], counts[row.reference_wave][row.target_group]
                ),
            }
        )
    return pd.DataFrame(rows)


def _in_group(frame: pd.DataFrame, group: dict[str, list[str]]) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    for dim, levels in group.items():
        mask &= frame[dim].isin(levels)
    return mask


# -- report -----------------------------------------------------------------------------------


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _line(label: str, hits: pd.Series, target: str) -> str:
    k, n = int(hits.sum()), len(hits)
    if n == 0:
        return f"{label:<44} {'-':>7} {0:>5}   {'':<15} {target}"
    lo, hi = _wilson(k, n)
    return f"{label:<44} {k / n:>7.1%} {n:>5}   [{lo:5.1%}, {hi:5.1%}] {target}"


def report(table: pd.DataFrame, levels: pd.DataFrame) -> list[str]:
    """The summary lines: false alarms, calibration, power by size and magnitude.

    The last lines check the single-wave estimates the changes are made of: if a wave's own
    90% intervals miss the truth too often, so will the changes.
    """
    covered = (table["lower"] <= table["true_change"]) & (table["true_change"] <= table["upper"])
    flagged = table["flag"] != "steady"
    right = np.where(table["true_change"] > 0, table["flag"] == "up", table["flag"] == "down")
    zero = table["kind"] == "zero"
    lines = [f"{'figure':<44} {'value':>7} {'n':>5}   {'95% Wilson':<15} target"]
    lines.append(_line("(a) false alarms (true change 0, flagged)", flagged[zero], "<= 5%"))
    # the earlier rule, P(up) or P(down) >= 0.95, is two-sided at 10%: shown for comparison
    loose = np.maximum(table["p_up"], table["p_down"]) >= PROBABILITY
    label = f"      one-sided rule, P >= {PROBABILITY:.2f} (10% two-sided)"
    lines.append(_line(label, loose[zero], ""))
    lines.append(_line("(b) calibration: 90% interval covers truth", covered, "85-95%"))
    for kind in ("zero", "declared", "induced"):
        part = table["kind"] == kind
        lines.append(_line(f"      {kind} changes", covered[part], ""))
    lines.append("(c) power: declared changes flagged in the right direction")
    declared = table["kind"] == "declared"
    for size, group in SIZE_GROUPS.items():
        in_size = declared & (table["target_group"] == group)
        resp = table.loc[in_size, "respondents"]
        base = f"{int(resp.mean())} resp." if len(resp) else "-"
        for magnitude in MAGNITUDES:
            part = in_size & np.isclose(table["declared_change"].abs(), magnitude)
            label = f"      {size} ({group}, {base}), {magnitude * 100:.0f} pts"
            lines.append(_line(label, pd.Series(right[part.to_numpy()]), ""))
    # A change confined to one target group is an interaction the main-effects model does not
    # have: partial pooling spreads it over the group's main effects and shrinks it.
    lines.append("(e) declared changes: median estimated / true change (1 = unbiased)")
    for size, group in SIZE_GROUPS.items():
        part = declared & (table["target_group"] == group)
        ratio = (table.loc[part, "mean"] / table.loc[part, "true_change"]).median()
        label = f"      {size} ({group})"
        lines.append(f"{label:<44} {ratio:>7.2f} {int(part.sum()):>5}")
    inside = (levels["lower"] <= levels["true_value"]) & (levels["true_value"] <= levels["upper"])
    lines.append(_line("(f) single waves: 90% interval covers truth", inside, "85-95%"))
    for group in ["all", *TARGET_GROUPS]:
        part = levels["target_group"] == group
        lines.append(_line(f"      {group}", inside[part], ""))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate, fit, compare and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (populations)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--waves", type=int, default=2, help="waves per seed (K >= 2)")
    parser.add_argument("--respondents", type=int, default=1000, help="per wave")
    parser.add_argument("--draws", type=int, help="override misterp's sampler draws")
    parser.add_argument("--tune", type=int, help="override misterp's sampler tune")
    parser.add_argument("--chains", type=int, help="override misterp's sampler chains")
    parser.add_argument(
        "--r-hat-max", type=float, help="override misterp's convergence.r_hat_max (issue 23)"
    )
    parser.add_argument("--output", type=Path, help="keep the waves here (default: temporary)")
    parser.add_argument("--csv", type=Path, help="write the per-comparison table here")
    args = parser.parse_args(argv)
    if args.waves < 2:
        parser.error("--waves must be at least 2: changes need a pair of waves")
    logging.getLogger("misterp").setLevel(logging.WARNING)
    command = " ".join([".venv/bin/python", "bench/change_accuracy.py", *sys.argv[1:]])

    sampler = {
        key: value
        for key, value in (("draws", args.draws), ("tune", args.tune), ("chains", args.chains))
        if value is not None
    }
    compare, rule = _change_rule()
    spec = truth_spec(args.respondents)
    labels = [f"w{k}" for k in range(1, args.waves + 1)]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    plan = plan_changes(seeds, labels, spec)
    root = args.output or Path(tempfile.mkdtemp(prefix="change-accuracy-"))
    started = time.perf_counter()
    seconds: list[float] = []
    converged = models = 0
    tables, levels = [], []
    try:
        for seed in seeds:
            series = simulate_waves(seed, spec, labels, plan[seed])
            convergence = {"r_hat_max": args.r_hat_max} if args.r_hat_max else None
            fitted = fit_series(series, root, seed, sampler, convergence)
            seconds += fitted.seconds
            converged += fitted.converged
            models += fitted.models
            levels.append(fitted.levels)
            tables.append(compare_series(series, fitted.output, seed, compare))
    finally:
        if args.output is None:
            shutil.rmtree(root, ignore_errors=True)
    table = pd.concat(tables, ignore_index=True)
    if args.csv:
        table.to_csv(args.csv, index=False)

    print()
    print(f"command:   {command}")
    print(f"rule:      {rule}; flag at P >= {PROBABILITY}, {INTERVAL:.0%} intervals")
    print(
        f"design:    {len(seeds)} seeds x {args.waves} waves, 1 market, {len(BRANDS)} brands, "
        f"{args.respondents} respondents per wave; sampler {sampler or 'misterp defaults'}"
        f"{f'; r_hat_max {args.r_hat_max}' if args.r_hat_max else ''}"
    )
    print(
        f"fits:      {converged}/{models} models converged; "
        f"{np.mean(seconds):.0f} s per wave (min {min(seconds):.0f}, max {max(seconds):.0f}); "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print(
        f"compared:  {len(table)} estimate changes ({(table['kind'] == 'zero').sum()} zero, "
        f"{(table['kind'] == 'declared').sum()} declared, "
        f"{(table['kind'] == 'induced').sum()} induced)"
    )
    print()
    for line in report(table, pd.concat(levels, ignore_index=True)):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
