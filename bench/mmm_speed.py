"""Speed and recovery of one market's media-mix model through misterp vs pymc-marketing's default.

Issue 13's goal: one market of 156 weeks x 5 channels through misterp in under 60 s on a
2-core machine. The script simulates the market (``misterp.mmm.simulate``, raw units), then

1. times ``misterp.pipeline.mmm.run_mmm`` end to end (validation, fit with nutpie and the retry
   policy, ROAS/marginal ROAS/response curves/holdout, publication to a temporary folder);
2. times pymc-marketing's own default fit of the same model on the same weeks: the same
   ``MMM`` components with the library's default priors, ``mmm.fit(X, y)`` with its default
   sampler (PyMC's NUTS, 4 chains x 1,000 draws after 1,000 tuning steps, all cores), and
   prints the ratio;
3. prints, per seed, each channel's true ROAS over the fitted weeks, misterp's estimate, its
   90 % interval and whether it covers the truth, then the coverage over all seeds.

Its last line is machine-readable::

    weeks=156 channels=5 misterp_s=S pymc_marketing_s=P ratio=R coverage=C/N converged=K/M

Run from the repository root: ``.venv/bin/python bench/mmm_speed.py [--seeds 3] [--no-baseline]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

from misterp.mmm.config import MMMConfig
from misterp.mmm.model import TARGET, prepare_market
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.validation import read_mmm_input
from misterp.pipeline.mmm import run_mmm


def misterp_fit(seed: int, weeks: int, channels: int, root: Path) -> tuple[float, pd.DataFrame]:
    simulated = simulate_mmm(seed, markets=("DE",), n_channels=channels, n_weeks=weeks)
    simulated.write(root / f"input{seed}")
    config = MMMConfig(
        input=str(root / f"input{seed}"), output=str(root / "out"), controls=["price"]
    )
    started = time.perf_counter()
    outcome = run_mmm(config, workers=1)
    seconds = time.perf_counter() - started
    fitted = sorted(simulated.kpi["date"].unique())[: weeks - config.holdout_weeks]
    truth = simulated.roas([pd.Timestamp(d) for d in fitted])
    table = outcome.roas.merge(
        truth[["market", "channel", "roas"]], on=["market", "channel"], suffixes=("", "_true")
    )
    table["covered"] = (table["roas_lower"] <= table["roas_true"]) & (
        table["roas_true"] <= table["roas_upper"]
    )
    table["seed"] = seed
    table["status"] = outcome.diagnostics["status"].iloc[0]
    table["seconds"] = seconds
    return seconds, table


def pymc_marketing_default(seed: int, weeks: int, channels: int, root: Path) -> float:
    """The same model and weeks, fitted the way pymc-marketing's docs start: defaults."""
    from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation

    config = MMMConfig(
        input=str(root / f"input{seed}"), output=str(root / "out"), controls=["price"]
    )
    data = read_mmm_input(config)
    market = prepare_market(data, "DE", config)
    fit = market.fit_frame
    mmm = MMM(
        date_column="date",
        channel_columns=list(market.channels),
        target_column=TARGET,
        adstock=GeometricAdstock(l_max=config.l_max),
        saturation=LogisticSaturation(),
        control_columns=list(market.controls),
        yearly_seasonality=config.yearly_seasonality,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mmm.fit(fit.drop(columns=[TARGET]), fit[TARGET], progressbar=False, random_seed=seed)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weeks", type=int, default=156)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=1, help="recovery over this many seeds")
    parser.add_argument("--first-seed", type=int, default=20250601)
    parser.add_argument("--no-baseline", action="store_true", help="skip pymc-marketing's fit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    tables = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            seconds, table = misterp_fit(seed, args.weeks, args.channels, root)
            tables.append(table)
            print(f"seed {seed}: misterp {seconds:.1f} s, {table['status'].iloc[0]}")
        baseline = float("nan")
        if not args.no_baseline:
            baseline = pymc_marketing_default(args.first_seed, args.weeks, args.channels, root)
            print(f"pymc-marketing default fit (same model, weeks and seed): {baseline:.1f} s")
    results = pd.concat(tables, ignore_index=True)
    columns = ["seed", "channel", "spend_share", "roas_true", "roas", "roas_lower", "roas_upper"]
    columns += ["covered"]
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(results[columns].round(3).to_string(index=False))
    misterp_s = float(tables[0]["seconds"].iloc[0])
    converged = sum(t["status"].iloc[0] == "converged" for t in tables)
    print(
        f"weeks={args.weeks} channels={args.channels} misterp_s={misterp_s:.1f} "
        f"pymc_marketing_s={baseline:.1f} ratio={baseline / misterp_s:.2f} "
        f"coverage={int(results['covered'].sum())}/{len(results)} "
        f"converged={converged}/{len(tables)}"
    )


if __name__ == "__main__":
    main()
