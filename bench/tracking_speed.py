"""Speed and memory of the tracking step: changes, trends, funnel, competitors and the report.

The issue asks for a 1,000-model wave with 12 prior waves in under a minute on 2 cores, with
memory that does not grow with the number of waves beyond the trend table. This script writes
``--prior-waves`` + 1 synthetic published waves (manifests, per-model draws, estimates; no
fitting) to a temporary folder, builds the trend table of the prior waves, and then times
``misterp.tracking.update.update_tracking`` on the last wave in a fresh process pinned to
``--cores`` CPUs: the previous, year-ago and rolling changes of every model and target group,
and the incremental trend update; then the funnel and competitor tables of that wave from its
draws (read back from the store, as a re-publish would; publish itself has them in memory), and
the report (``misterp.reporting.write.update_report``: CSVs, tables.xlsx, index.html). With
``--smoothing-window`` K (default 13: every wave; 0 turns it off) the waves are published with
``tracking.smoothing`` on, and the smoothed trend over the last K waves
(``misterp.tracking.smoothed.wave_smoothing``, written as ``smoothed.parquet``) is timed as its
own step, after the changes and trends. The group-vs-rest and brand-vs-brand comparisons under
the flag rule (issue 24) are timed as their own step too. The
models are brand-shaped, as in a tracker: per market and brand ``aware_B``, ``consider_B``
(asked among the aware, so each brand has a funnel) and eight ``assoc_B`` options, 10 models a
brand. It prints one machine-readable last line::

    models=N prior_waves=W draws=D groups=G change_rows=R seconds=S peak_rss_mb=P ...

``seconds`` is the wall time of all steps together (each step's share is printed too),
``peak_rss_mb`` the peak resident set of the process that ran them (imports included). Setup
(writing the waves) is not timed.

Run from the repository root: ``.venv/bin/python bench/tracking_speed.py --models 1000``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from queue import Empty
from typing import Any

import numpy as np
import pandas as pd


def _month(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


ASSOCIATIONS = tuple(f"attr{a}" for a in range(8))


def _brand_keys(models: int) -> list[str]:
    """About ``models`` keys over two markets: per brand aware, consider and 8 associations."""
    brands = max(1, round(models / 20))
    keys = []
    for market in ("M0", "M1"):
        for b in range(brands):
            brand = f"b{b:03d}"
            keys += [f"{market}/aware_{brand}/yes", f"{market}/consider_{brand}/yes"]
            keys += [f"{market}/assoc_{brand}/{option}" for option in ASSOCIATIONS]
    return keys


def _spec(key: str) -> Any:
    """The ModelSpec of a bench key: consideration and associations asked among the aware."""
    from misterp.mrp.specs import ModelSpec

    market, question, option = key.split("/")
    brand = question.rsplit("_", 1)[-1]
    conditional = not question.startswith("aware_")
    return ModelSpec(
        market,
        question,
        option,
        "p(yes, n) ~ 1 + (1|age)",
        brand=brand,
        base_question=f"aware_{brand}" if conditional else None,
        base_option="yes" if conditional else None,
    )


def write_waves(
    root: str, models: int, prior_waves: int, draws: int, groups: int, smoothing: int = 0
) -> list[str]:
    """Publish ``prior_waves + 1`` synthetic monthly waves ending 2026-11; returns their ids."""
    from misterp.mrp.records import Manifest, ManifestModel
    from misterp.records import StatusCounts
    from misterp.status import FitStatus
    from misterp.storage import ResultStore

    store = ResultStore(root)
    target_groups = {f"group{g}": {"age": [f"band{g}"]} for g in range(groups)}
    names = ["all", *target_groups]
    end = 2026 * 12 + 10
    waves = [_month(end - k) for k in range(prior_waves, -1, -1)]
    rng = np.random.default_rng(20261130)
    keys = _brand_keys(models)
    for wave in waves:
        manifest_models, rows = [], []
        for key in keys:
            market, question, option = key.split("/")
            values = rng.beta(20, 30, size=(len(names), draws)).astype(np.float32)
            frame = pd.DataFrame(
                {
                    "target_group": np.repeat(names, draws),
                    "draw": np.tile(np.arange(draws, dtype=np.int32), len(names)),
                    "value": values.ravel(),
                }
            )
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            store.write_bytes(f"{wave}/draws/{key}.parquet", buffer.getvalue())
            spec = dataclasses.asdict(_spec(key))
            manifest_models.append(
                ManifestModel(
                    key=key,
                    spec=spec,
                    spec_hash="s",
                    data_hash="d",
                    status=FitStatus.CONVERGED,
                    estimate_status=FitStatus.CONVERGED,
                    attempts=(),
                    seconds=1.0,
                    fit_id=None,
                    n_respondents=1000,
                    draws=f"draws/{key}.parquet",
                )
            )
            for name, row in zip(names, values, strict=True):
                rows.append(
                    {
                        "wave": wave,
                        "market": market,
                        "question_id": question,
                        "option": option,
                        "brand": question.rsplit("_", 1)[-1],
                        "target_group": name,
                        "mean": float(row.mean()),
                        "sd": float(row.std(ddof=1)),
                        "q05": float(np.quantile(row, 0.05)),
                        "q95": float(np.quantile(row, 0.95)),
                        "n": 1000,
                        "status": "converged",
                    }
                )
        estimates = store.write_parquet(f"{wave}/estimates.parquet", pd.DataFrame(rows))
        own = dict.fromkeys(keys, FitStatus.CONVERGED)
        counts = StatusCounts.count(own, own)
        manifest = Manifest(
            wave=wave,
            input=None,
            input_hashes={"poststrat": "census"},
            versions={},
            config={
                "target_groups": target_groups,
                **(
                    {"tracking": {"smoothing": {"enabled": True, "window": smoothing}}}
                    if smoothing
                    else {}
                ),
            },
            counts=counts,
            wall_seconds=None,
            files={},
            estimates_sha256=hashlib.sha256(estimates).hexdigest(),
            models=tuple(manifest_models),
            healthy=True,
        )
        store.publish(wave, manifest.to_json())
    return waves


def _timed(root: str, wave: str, cores: int, queue: Any) -> None:
    """In a fresh process: run the step and report it; a failure is reported, not lost."""
    try:
        _run_step(root, wave, cores, queue)
    except Exception as error:  # the parent waits on the queue: tell it why
        queue.put((f"failed: {type(error).__name__}", str(error), 0, 0.0, 0.0, {}))


def _run_step(root: str, wave: str, cores: int, queue: Any) -> None:
    """Pin to ``cores`` CPUs, run the step, report time and peak RSS."""
    if hasattr(os, "sched_setaffinity"):
        available = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, available[:cores])
    from misterp.mrp.config import SmoothingConfig
    from misterp.mrp.poststratify import draws_by_group
    from misterp.reporting.write import update_report
    from misterp.storage import ResultStore
    from misterp.tracking.catalog import read_manifest
    from misterp.tracking.changes import tracking_of
    from misterp.tracking.comparisons import COMPARISONS_FILE, comparison_table
    from misterp.tracking.competitors import COMPETITORS_FILE, competitor_table
    from misterp.tracking.funnel import FUNNEL_FILE, funnel_table, plan_funnels
    from misterp.tracking.smoothed import SMOOTHED_FILE, wave_smoothing
    from misterp.tracking.update import update_tracking

    store = ResultStore(root)
    steps: dict[str, float] = {}
    started = time.perf_counter()
    manifest = read_manifest(store, wave)
    assert manifest is not None
    settings = tracking_of(manifest)
    # changes and trends first, then the smoothing on its own clock (update_tracking would run
    # both in one call)
    smoothing = settings.smoothing
    outcome = update_tracking(
        store, wave, settings.model_copy(update={"smoothing": SmoothingConfig()})
    )
    steps["changes+trends"] = time.perf_counter() - started
    if smoothing.enabled:
        begun = time.perf_counter()
        smoothed = wave_smoothing(store, wave, settings)
        store.write_parquet(f"{wave}/{SMOOTHED_FILE}", smoothed)
        steps[f"smoothing ({smoothing.window} waves)"] = time.perf_counter() - begun

    begun = time.perf_counter()
    manifest = read_manifest(store, wave)
    assert manifest is not None
    specs = [_spec(model.key) for model in manifest.models]
    grouped = {
        model.key: draws_by_group(store.read_parquet(f"{wave}/{model.draws}"))
        for model in manifest.models
    }
    funnels = plan_funnels(specs)
    store.write_parquet(f"{wave}/{FUNNEL_FILE}", funnel_table(wave, funnels, grouped))
    store.write_parquet(f"{wave}/{COMPETITORS_FILE}", competitor_table(wave, specs, grouped))
    steps["funnel+competitors"] = time.perf_counter() - begun

    # Group vs rest needs the cell draws, which only publication holds: a stand-in of the same
    # shape (each group minus 'all') times the flagging of as many differences.
    begun = time.perf_counter()
    versus_rest = {
        key: {g: v - groups["all"] for g, v in groups.items() if g != "all"}
        for key, groups in grouped.items()
    }
    store.write_parquet(
        f"{wave}/{COMPARISONS_FILE}", comparison_table(wave, specs, grouped, versus_rest)
    )
    del grouped, versus_rest
    steps["comparisons"] = time.perf_counter() - begun

    begun = time.perf_counter()
    report = update_report(store, wave)
    steps["report"] = time.perf_counter() - begun
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(
        (
            outcome.status if report.status == "written" else f"report {report.status}",
            f"{outcome.message}; report: {report.message}",
            outcome.change_rows,
            seconds,
            peak_mb,
            steps,
        )
    )


def main(argv: list[str] | None = None) -> int:
    """Write the waves, time the step, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--prior-waves", type=int, default=12)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=4, help="target groups besides 'all'")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--smoothing-window",
        type=int,
        default=None,
        help="tracking.smoothing.window of the waves (0: smoothing off); default: every wave",
    )
    args = parser.parse_args(argv)
    if args.smoothing_window is None:
        args.smoothing_window = args.prior_waves + 1
    with tempfile.TemporaryDirectory(prefix="misterp-tracking-") as root:
        started = time.perf_counter()
        waves = write_waves(
            root, args.models, args.prior_waves, args.draws, args.groups, args.smoothing_window
        )
        from misterp.storage import ResultStore
        from misterp.tracking.trends import rebuild_trends

        rebuild_trends(ResultStore(root))  # the table as the prior waves left it
        print(f"setup: {len(waves)} waves written in {time.perf_counter() - started:.0f} s")
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        process = context.Process(target=_timed, args=(root, waves[-1], args.cores, queue))
        process.start()
        while True:  # a child that dies without reporting (killed, out of memory) ends the run
            try:
                status, message, rows, seconds, peak_mb, steps = queue.get(timeout=5)
                break
            except Empty:
                if not process.is_alive():
                    print(f"the timed process died (exit {process.exitcode}) without a report")
                    return 1
        process.join()
    print(f"tracking step: {status} ({message})")
    for step, step_seconds in steps.items():
        print(f"  {step:<20} {step_seconds:6.2f} s")
    print(
        f"models={len(_brand_keys(args.models))} prior_waves={args.prior_waves} "
        f"draws={args.draws} groups={args.groups + 1} change_rows={rows} "
        f"smoothing_window={args.smoothing_window} seconds={seconds:.2f} peak_rss_mb={peak_mb:.0f}"
    )
    return 0 if status == "updated" else 1


if __name__ == "__main__":
    sys.exit(main())
