"""How much accuracy does a census built from margins cost, against the true joint?

Issue 22 item 5: a wave may give its census as margins and cross-tables (``census_tables``)
that misterp builds into the joint by iterative proportional fitting (``misterp.mrp.census``).
This bench simulates one market whose true census has a dependence between age and education
(``WaveTruthSpec.census_association``: the older, the less educated; without it the simulated
joint is a product of margins and margins alone would recover it), fits the wave once with real
sampling (the config's default sampler) and poststratifies the same fits with each census:

true joint
    ``poststrat.csv``: the simulated census itself.
margins + education_x_age, margins + gender_x_age
    One cross-table and the other demographics' margins; education x age carries the
    simulated dependence, gender x age does not.
margins only
    Every demographic's margin alone.

each built from a ``uniform`` and from a ``sample`` seed. A census never enters a fit (only
its poststratification), so every run after the first reuses the converged fits of the first
and republishes (``misterp.pipeline.wave.run_wave_inline`` into one output folder).

Printed: per census, the RMSE (percentage points) of the published posterior means against the
exact truth over the target groups (not ``all``), over ``all``, and the ratio of the groups'
RMSE to the true joint's. The goal: margins plus one cross-table within 10 % of the true joint.

Run: ``.venv/bin/python bench/census_margins.py`` (seeds 11, 12 and 13; about 3-4 minutes
on 2 cores), then a table per seed and the mean over them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.census import tables_of_joint
from misterp.mrp.config import parse_config
from misterp.mrp.simulate import SimulatedWave, WaveTruthSpec, simulate_wave
from misterp.pipeline.wave import run_wave_inline

WAVE = "2026-10"
DEMOGRAPHICS = ("gender", "age", "education", "region")


def _margins(*crossed: str) -> dict[str, list[str]]:
    """One cross-table of ``crossed`` (if any) and the margin of every other demographic."""
    tables = {"_x_".join(crossed): list(crossed)} if crossed else {}
    return tables | {d: [d] for d in DEMOGRAPHICS if d not in crossed}


CENSUSES: dict[str, dict[str, list[str]] | None] = {
    "true joint": None,
    "margins + education_x_age": _margins("education", "age"),
    "margins + gender_x_age": _margins("gender", "age"),
    "margins only": _margins(),
}


def write_input(
    simulated: SimulatedWave, folder: Path, tables: dict[str, list[str]] | None
) -> None:
    """The wave's input folder with the true joint, or with census tables instead."""
    simulated.write(str(folder))
    if tables is not None:
        tables_of_joint(simulated.poststrat, tables).reindex(
            columns=["market", "table", *DEMOGRAPHICS, "population"]
        ).to_csv(folder / "census_tables.csv", index=False)
        (folder / "poststrat.csv").unlink()


def rmse(estimates: pd.DataFrame, truth: pd.DataFrame, groups: bool) -> float:
    """RMSE in percentage points of the posterior means against the truth."""
    keys = ["market", "question_id", "option", "target_group"]
    scored = estimates.merge(truth, on=keys)
    scored = scored[
        scored["target_group"].ne("all") if groups else scored["target_group"].eq("all")
    ]
    return float(np.sqrt(np.mean((scored["mean"] - scored["true_value"]) ** 2)) * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--respondents", type=int, default=1500)
    parser.add_argument("--brands", type=int, default=2)
    parser.add_argument(
        "--association", type=float, default=-0.8, help="age x education strength in the census"
    )
    args = parser.parse_args()
    tables = [run_seed(seed, args) for seed in args.seeds]
    with pd.option_context("display.width", 120, "display.precision", 3):
        for seed, table in zip(args.seeds, tables, strict=True):
            print(f"seed {seed}")
            print(table.to_string(index=False))
        both = pd.concat(tables)
        summary = both.groupby(["census", "seed"], sort=False)[["groups", "all", "ratio"]].mean()
        print(f"mean over seeds {', '.join(map(str, args.seeds))}")
        print(summary.to_string())


def run_seed(seed: int, args: argparse.Namespace) -> pd.DataFrame:
    """Fit one simulated wave and score its estimates with every census."""
    spec = WaveTruthSpec(
        markets=("DE",),
        brands=tuple(f"brand{i:02d}" for i in range(1, args.brands + 1)),
        n_respondents=args.respondents,
        rare_brand=None,
        association_options=("innovative", "trustworthy"),
        census_association={("age", "education"): args.association},
    )
    simulated = simulate_wave(seed, spec)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        output = str(Path(tmp) / "results")
        for name, tables in CENSUSES.items():
            for ipf_seed in ("uniform",) if tables is None else ("uniform", "sample"):
                folder = Path(tmp) / f"input-{len(rows)}"
                write_input(simulated, folder, tables)
                raw = simulated.config(str(folder), output) | {"wave": WAVE}
                raw["census"] = {"seed": ipf_seed}
                started = time.perf_counter()
                outcome = run_wave_inline(parse_config(raw))
                rows.append(
                    {
                        "census": name,
                        "seed": ipf_seed if tables is not None else "-",
                        "groups": rmse(outcome.estimates, simulated.truth, groups=True),
                        "all": rmse(outcome.estimates, simulated.truth, groups=False),
                        "converged": outcome.counts.converged,
                        "models": outcome.counts.models,
                        "seconds": time.perf_counter() - started,
                    }
                )
    table = pd.DataFrame(rows)
    table["ratio"] = table["groups"] / table.loc[0, "groups"]
    return table


if __name__ == "__main__":
    main()
