"""Does pooling markets help where they are short of data? Independent vs hierarchical fits.

Issue 13 asks for a pooled multi-market option "where markets are short of data". For each
seed the script simulates ``--markets`` markets of ``--weeks`` weeks (``misterp.mmm.simulate``:
the markets share each channel's carry-over and saturation, and differ in spend levels and in
ROAS by a factor of 0.8-1.2, as markets of one brand do), then fits them through
``misterp.pipeline.mmm.run_mmm`` twice with the default settings: ``pooling: independent`` (one
model per market) and ``pooling: hierarchical`` (one model, channel parameters partially
pooled). No holdout, so ROAS covers every week and the truth is exact.

Printed per variant, over every market x channel with at least ``--min-share`` of its market's
spend (the issue's "non-trivial share"):

within20
    Share of ROAS estimates (posterior mean) within +-20 % of the true ROAS.
med_err
    Median absolute relative error of the ROAS.
cover90
    Share of 90 % intervals covering the true ROAS.
width
    Median width of the 90 % interval relative to the true ROAS.
converged
    Markets converged with the default settings (all markets of a pooled fit share one fit).
s/run
    Seconds per run (all markets), on this machine as it was loaded.

Then the ratio pooled / independent of the median error and of the interval width, in one line.

Run from the repository root: ``.venv/bin/python bench/mmm_pooling.py [--seeds 4] [--weeks 60]
[--markets 4] [--channels 4]``; about 3-5 minutes per seed on 2 cores.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd

from misterp.mmm.config import MMMConfig
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm

MARKETS = ("DE", "FR", "IT", "ES", "NL", "PL", "SE", "AT")
VARIANTS = ("independent", "hierarchical")


def fit(seed: int, args: argparse.Namespace, root: Path, pooling: str) -> pd.DataFrame:
    """One run of one variant: ROAS beside the truth, per market and channel."""
    markets = MARKETS[: args.markets]
    simulated = simulate_mmm(seed, markets=markets, n_channels=args.channels, n_weeks=args.weeks)
    folder = root / f"input{seed}"
    if not folder.exists():
        simulated.write(folder)
    config = MMMConfig(
        input=str(folder),
        output=str(root / f"out-{pooling}"),
        controls=["price"],
        holdout_weeks=0,
        pooling=pooling,
        run=f"s{seed}",
    )
    started = time.perf_counter()
    outcome = run_mmm(config)
    seconds = time.perf_counter() - started
    truth = simulated.roas()
    table = outcome.roas.merge(
        truth[["market", "channel", "roas", "spend_share"]],
        on=["market", "channel"],
        suffixes=("", "_true"),
    )
    table["covered"] = table["roas_lower"].le(table["roas_true"]) & table["roas_true"].le(
        table["roas_upper"]
    )
    table["rel_err"] = (table["roas"] / table["roas_true"] - 1).abs()
    table["rel_width"] = (table["roas_upper"] - table["roas_lower"]) / table["roas_true"]
    table["seed"], table["variant"], table["seconds"] = seed, pooling, seconds
    table["converged"] = table["status"].eq("converged")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=20261201)
    parser.add_argument("--weeks", type=int, default=60, help="weeks per market (short: 52-78)")
    parser.add_argument("--markets", type=int, default=4)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--min-share", type=float, default=0.10)
    parser.add_argument("--csv", type=Path, help="write every estimate beside its truth here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tables = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for variant in VARIANTS:
                table = fit(seed, args, Path(folder), variant)
                tables.append(table)
                kept = table[table["spend_share_true"] >= args.min_share]
                print(
                    f"seed {seed} {variant:12s} {table['seconds'].iloc[0]:6.1f} s  "
                    f"median error {kept['rel_err'].median():.3f}  "
                    f"covered {int(kept['covered'].sum())}/{len(kept)}  "
                    f"converged {int(table.groupby('market')['converged'].all().sum())}"
                    f"/{args.markets}",
                    flush=True,
                )
    results = pd.concat(tables, ignore_index=True)
    if args.csv:
        results.to_csv(args.csv, index=False)
    kept = results[results["spend_share_true"] >= args.min_share]
    rows = []
    for variant, group in kept.groupby("variant", sort=False):
        runs = results[results["variant"] == variant]
        markets = runs.groupby(["seed", "market"])["converged"].all()
        rows.append(
            {
                "variant": variant,
                "within20": (group["rel_err"] <= 0.20).mean(),
                "med_err": group["rel_err"].median(),
                "cover90": group["covered"].mean(),
                "width": group["rel_width"].median(),
                "converged": f"{int(markets.sum())}/{len(markets)}",
                "s/run": runs.groupby("seed")["seconds"].first().mean(),
                "n": len(group),
            }
        )
    summary = pd.DataFrame(rows).set_index("variant")
    print(
        f"\n{args.seeds} seeds x {args.markets} markets x {args.channels} channels, "
        f"{args.weeks} weeks each; channels with >= {args.min_share:.0%} of spend"
    )
    print(summary.round(3).to_string())
    pooled, alone = summary.loc["hierarchical"], summary.loc["independent"]
    print(
        f"pooled/independent: median error {pooled['med_err'] / alone['med_err']:.2f}x, "
        f"interval width {pooled['width'] / alone['width']:.2f}x"
    )


if __name__ == "__main__":
    main()
