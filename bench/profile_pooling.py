"""Does pooling a profile model over the last K waves make audience sizes better?

Issue 22 asks to measure it before building it: profile shares (category penetration) move
slowly, so the respondents of earlier waves could sharpen P(level | census cell). This bench
simulates series of waves of one population (``simulate_waves``: same census, same profile
structure, a fresh biased panel each wave), lets the profile's population share drift by
``--drift`` a wave, and fits the current wave's profile models (real sampling, the default
sampler) on its own respondents and, with ``profile_settings.pool_waves: K``, on its
respondents plus those of the K - 1 waves before (read from their wave folders, as a tracker's
run reads them). The audience sizes are assembled as publishing does and scored against the
current wave's exact truth.

Printed per K: sizes scored, 90% coverage (binomial se), mean interval width and RMSE in
percentage points, and the RMSE ratio against K = 1.

Run: ``.venv/bin/python bench/profile_pooling.py`` (seeds 1-15, K 1 3 6, drift 0 and 0.01:
a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audience_size_coverage import profile_sizes
from misterp.mrp.config import parse_config
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.simulate import ProfileTruth, WaveTruthSpec, simulate_waves

AUDIENCES = ("category_users", "category_users_18_34")
CURRENT_SHARE = 0.35
CURRENT_WAVE = "2026-10"


def month_ids(last: str, count: int) -> list[str]:
    """The ``count`` monthly wave ids ending at ``last`` (``YYYY-MM``), oldest first."""
    year, month = map(int, last.split("-"))
    index = year * 12 + month - 1
    return [f"{i // 12:04d}-{i % 12 + 1:02d}" for i in range(index - count + 1, index + 1)]


def write_series(root: Path, seed: int, spec: WaveTruthSpec, waves: int, drift: float) -> Any:
    """``waves`` consecutive wave folders ``root/WAVE``; returns the last (current) wave.

    Wave k's profile share is ``CURRENT_SHARE - drift * (waves - 1 - k)``: the same cell
    structure (the profile world's draws do not depend on the share), another intercept.
    """
    labels = month_ids(CURRENT_WAVE, waves)
    current = None
    assert spec.profile is not None
    for k, label in enumerate(labels):
        share = CURRENT_SHARE - drift * (waves - 1 - k)
        wave_spec = replace(spec, profile=replace(spec.profile, share=share))
        simulated = simulate_waves(seed, wave_spec, waves=labels).waves[label]
        simulated.write(str(root / label))
        current = simulated
    return current


def sizes(seed: int, pool: int, drift: float, respondents: int, cores: int) -> pd.DataFrame:
    """The current wave's audience sizes with its profile models pooled over ``pool`` waves."""
    spec = WaveTruthSpec(
        markets=("DE", "FR"),
        brands=("brand01",),
        n_respondents=respondents,
        rare_brand=None,
        association_options=(),
        profile=ProfileTruth(),
    )
    with tempfile.TemporaryDirectory() as tmp:
        current = write_series(Path(tmp), seed, spec, pool, drift)
        raw = current.config(f"{tmp}/{{wave}}", f"{tmp}/out")
        raw["sampler"] = {"cores": cores}
        raw["profile_settings"] = {"pool_waves": pool}
        table = profile_sizes(prepare_wave(parse_config(raw).resolved(wave=CURRENT_WAVE)))
    table = table[table["target_group"].isin(AUDIENCES)]
    scored = table.merge(current.audience_truth, on=["market", "target_group"])
    return scored.assign(seed=seed, pool=pool, drift=drift)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs=2, default=[1, 15], metavar=("FIRST", "LAST"))
    parser.add_argument("--pools", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--drifts", type=float, nargs="+", default=[0.0, 0.01])
    parser.add_argument("--respondents", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=2)
    options = parser.parse_args()
    first, last = options.seeds
    tables = []
    for drift in options.drifts:
        for seed in range(first, last + 1):
            for pool in options.pools:
                tables.append(sizes(seed, pool, drift, options.respondents, options.cores))
            print(f"drift {drift}: seed {seed} done", flush=True)
    scored = pd.concat(tables, ignore_index=True)
    scored["covered"] = (scored["lower"] <= scored["true_share"]) & (
        scored["true_share"] <= scored["upper"]
    )
    scored["error"] = scored["mean"] - scored["true_share"]
    print(
        f"\n{'drift/wave':>10} {'K':>3} {'sizes':>6} {'covered':>8} {'+-se':>6}"
        f" {'width pts':>10} {'RMSE pts':>9} {'bias pts':>9} {'RMSE / K=1':>11}"
    )
    for drift in sorted(set(scored["drift"])):
        base = None
        for pool in sorted(set(scored["pool"])):
            part = scored[(scored["drift"] == drift) & (scored["pool"] == pool)]
            share = part["covered"].mean()
            se = np.sqrt(share * (1 - share) / len(part))
            width = (part["upper"] - part["lower"]).mean() * 100
            rmse = np.sqrt((part["error"] ** 2).mean()) * 100
            bias = part["error"].mean() * 100
            base = rmse if base is None else base
            print(
                f"{drift:10.3f} {pool:3d} {len(part):6d} {share:8.1%} {se:6.1%}"
                f" {width:10.2f} {rmse:9.2f} {bias:9.2f} {rmse / base:11.2f}"
            )


if __name__ == "__main__":
    main()
