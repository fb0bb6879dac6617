"""What does an audience on a profile variable cost, against the same wave without it?

Issue 22's speed target: a wave with one two-level profile in its audiences costs at most 1.3x
the same wave without it. The profile adds one model per market (P(level | census cell), on
the census cells) and, with ``profile_settings.predictor`` (the default), the profile as an
effect in every question model, on twice the cells.

The bench simulates one wave (``misterp.mrp.simulate``; a ``category_user`` column drawn per
respondent from a logit in age and gender, with its own generator), then runs it end to end
in this process (``misterp.pipeline.wave.run_wave_inline``, the config's default sampler on
``--cores`` cores, no Prefect) three ways, alternating, ``--repeats`` times each, every run
into a fresh output folder (no reuse):

base
    ``target_groups`` on the census only (the profile declared, but no group uses it, so it
    is not modelled).
audience
    plus ``profiles: [category_user]`` and a ``category_users`` target group (predictor on).
audience, no predictor
    the same with ``profile_settings.predictor: false`` (one more model per market only).

Printed: the median wall and CPU seconds per arm (CPU: every thread of this process, so the
ratio stays meaningful when other work shares the machine), models planned and converged,
sampling attempts (a retry is a second attempt) and the ratios to the base.

Run: ``.venv/bin/python bench/audience_cost.py`` (about 10 minutes on 2 cores with the
defaults).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.config import parse_config
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.pipeline.wave import run_wave_inline

WAVE = "2026-10"


def write_wave(folder: Path, seed: int, brands: int, respondents: int) -> dict[str, Any]:
    """A one-market wave with a ``category_user`` profile; returns its base config."""
    spec = WaveTruthSpec(
        markets=("DE",),
        brands=tuple(f"brand{i:02d}" for i in range(1, brands + 1)),
        n_respondents=respondents,
        rare_brand=None,
        association_options=("innovative",),
    )
    simulated = simulate_wave(seed, spec)
    simulated.write(str(folder))
    people = pd.read_csv(folder / "respondents.csv", dtype=str)
    rng = np.random.default_rng(seed + 1)
    young = people["age"].isin(["18-24", "25-34"]).to_numpy()
    female = people["gender"].eq("female").to_numpy()
    logit = -0.5 + 0.8 * young - 0.4 * female
    people["category_user"] = np.where(
        rng.random(len(people)) < 1 / (1 + np.exp(-logit)), "yes", "no"
    )
    people.to_csv(folder / "respondents.csv", index=False)
    return simulated.config(str(folder), "unused")


@dataclass(frozen=True)
class ArmRun:
    """One run of an arm: wall and CPU seconds (CPU counts every thread of this process, so
    it stays comparable on a busy machine), models planned and converged, sampling attempts."""

    seconds: float
    cpu_seconds: float
    models: int
    converged: int
    attempts: int


def run_arm(base: dict[str, Any], arm: str, output: Path, cores: int) -> ArmRun:
    """Wall and CPU seconds, models planned and converged, and attempts of one run of an arm."""
    raw = dict(base) | {"output": str(output), "wave": WAVE}
    raw["sampler"] = {"cores": cores}
    # declared in every arm (the column is in the file); modelled only where a group uses it
    raw["profiles"] = ["category_user"]
    if arm != "base":
        raw["target_groups"] = dict(raw["target_groups"]) | {
            "category_users": {"category_user": ["yes"]}
        }
    if arm == "audience, no predictor":
        raw["profile_settings"] = {"predictor": False}
    started, cpu_started = time.perf_counter(), time.process_time()
    outcome = run_wave_inline(parse_config(raw))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    models = outcome.manifest.models
    attempts = sum(len(model.attempts) for model in models)
    return ArmRun(seconds, cpu_seconds, len(models), outcome.manifest.counts.converged, attempts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--brands", type=int, default=3)
    parser.add_argument("--respondents", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=2)
    options = parser.parse_args()
    arms = ("base", "audience", "audience, no predictor")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = write_wave(root / "input", options.seed, options.brands, options.respondents)
        results: dict[str, list[ArmRun]] = {arm: [] for arm in arms}
        for arm in arms:  # compile every arm's models once, untimed
            run_arm(base, arm, root / f"warm-up-{arms.index(arm)}", options.cores)
        for repeat in range(options.repeats):
            order = arms if repeat % 2 == 0 else tuple(reversed(arms))
            for arm in order:
                out = root / f"{arm.replace(' ', '_').replace(',', '')}-{repeat}"
                results[arm].append(run_arm(base, arm, out, options.cores))
                run = results[arm][-1]
                print(
                    f"{arm:24} run {repeat + 1}: {run.seconds:6.1f} s"
                    f" ({run.cpu_seconds:.1f} CPU s),"
                    f" {run.converged}/{run.models} converged, {run.attempts} attempts"
                )
    base_wall = statistics.median(run.seconds for run in results["base"])
    base_cpu = statistics.median(run.cpu_seconds for run in results["base"])
    print(
        f"\n{'arm':24} {'median s':>9} {'CPU s':>7} {'models':>7} {'converged':>10}"
        f" {'attempts':>9} {'ratio':>6} {'CPU ratio':>10}"
    )
    for arm in arms:
        wall = statistics.median(run.seconds for run in results[arm])
        cpu = statistics.median(run.cpu_seconds for run in results[arm])
        first = results[arm][0]
        converged = min(run.converged for run in results[arm])
        attempts = max(run.attempts for run in results[arm])
        print(
            f"{arm:24} {wall:9.1f} {cpu:7.1f} {first.models:7d} {converged:10d} {attempts:9d}"
            f" {wall / base_wall:6.2f} {cpu / base_cpu:10.2f}"
        )


if __name__ == "__main__":
    main()
