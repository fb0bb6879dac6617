"""Are the audience sizes' intervals calibrated? Many seeds, the profile models alone.

Issue 22: an audience's size (the category penetration, ``audiences.parquet``) should be
covered by its 90% interval as often as the estimates are (85-95%). ``bench/audience_accuracy``
fits every question model too, so it affords a few seeds: 20 sizes, too few to tell a 75%
coverage from bad luck. A size depends on the profile models only (P(level | census cell),
weighted by the census), so this bench simulates many waves (``WaveTruthSpec.profile``,
category users; the panel biased on demographics only), fits only the profile models (real
sampling, the config's default sampler), assembles the audience sizes the way publishing
does (``misterp.mrp.wave.assemble_audiences``) and scores them against the exact truth.

Printed: per audience, the sizes scored, the coverage of the 90% intervals with its binomial
standard error, the mean interval width and the RMSE (percentage points).

Run: ``.venv/bin/python bench/audience_size_coverage.py`` (seeds 1-40, markets DE and FR:
160 sizes; a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from types import SimpleNamespace

import numpy as np
import pandas as pd

from misterp.mrp.config import parse_config
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.simulate import ProfileTruth, WaveTruthSpec, simulate_wave
from misterp.mrp.wave import assemble_audiences, fit_prepared

AUDIENCES = ("category_users", "category_users_18_34")


def profile_sizes(prepared: PreparedWave) -> pd.DataFrame:
    """Fit the wave's profile models only and assemble its audience sizes as publishing does."""
    fits = {}
    for model in prepared.specs:
        if model.profile is None:
            continue
        result = fit_prepared(prepared, model)
        fits[model.key] = SimpleNamespace(draws=result.draws, status=result.status)
    return assemble_audiences(prepared, fits)  # type: ignore[arg-type]


def sizes_of_seed(
    seed: int, markets: tuple[str, ...], respondents: int, cores: int
) -> pd.DataFrame:
    """One simulated wave's audience sizes beside their truth."""
    spec = WaveTruthSpec(
        markets=markets,
        brands=("brand01",),
        n_respondents=respondents,
        rare_brand=None,
        association_options=(),
        profile=ProfileTruth(),
    )
    simulated = simulate_wave(seed, spec)
    with tempfile.TemporaryDirectory() as tmp:
        simulated.write(tmp)
        raw = simulated.config(tmp, f"{tmp}/out") | {"wave": "2026-10"}
        raw["sampler"] = {"cores": cores}
        sizes = profile_sizes(prepare_wave(parse_config(raw)))
    sizes = sizes[sizes["target_group"].isin(AUDIENCES)]
    scored = sizes.merge(simulated.audience_truth, on=["market", "target_group"])
    return scored.assign(seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs=2, default=[1, 40], metavar=("FIRST", "LAST"))
    parser.add_argument("--markets", nargs="+", default=["DE", "FR"])
    parser.add_argument("--respondents", type=int, default=1500)
    parser.add_argument("--cores", type=int, default=2)
    options = parser.parse_args()
    first, last = options.seeds
    tables = []
    for seed in range(first, last + 1):
        table = sizes_of_seed(seed, tuple(options.markets), options.respondents, options.cores)
        tables.append(table)
        covered = (table["lower"] <= table["true_share"]) & (table["true_share"] <= table["upper"])
        print(f"seed {seed}: {int(covered.sum())}/{len(table)} covered", flush=True)
    scored = pd.concat(tables, ignore_index=True)
    scored["covered"] = (scored["lower"] <= scored["true_share"]) & (
        scored["true_share"] <= scored["upper"]
    )
    print(
        f"\n{'audience':24} {'sizes':>6} {'covered':>8} {'+-se':>6}"
        f" {'width pts':>10} {'RMSE pts':>9}"
    )
    for group, part in [*scored.groupby("target_group"), ("all audiences", scored)]:
        share = part["covered"].mean()
        se = np.sqrt(share * (1 - share) / len(part))
        width = (part["upper"] - part["lower"]).mean() * 100
        rmse = np.sqrt(((part["mean"] - part["true_share"]) ** 2).mean()) * 100
        print(f"{group:24} {len(part):6d} {share:8.1%} {se:6.1%} {width:10.2f} {rmse:9.2f}")


if __name__ == "__main__":
    main()
