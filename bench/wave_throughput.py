"""Throughput of a synthetic wave through misterp, against the naive per-respondent fit.

Issue 5 asks for a 1,000-model wave (2 markets x 25 brands x awareness, consideration and 18
association options, 3,000 respondents per market) end to end in <= 10 minutes on a 2-core
machine, every model converged, at >= 50x the throughput of the naive fit with the same
posterior. This script generates such a wave with a known truth, runs misterp on it, fits a
sample of its models the naive way, and prints a table and one machine-readable last line::

    models=N converged=M wave_seconds=S naive_seconds_per_model=X \
misterp_seconds_per_model=Y ratio=R peak_rss_mb=P

What is measured
----------------
wave_seconds
    Wall time of the production path, ``flows.wave.run_wave`` (the ``misterp run`` flow):
    read and validate the CSV input, plan, stage, fit every model in a pool of worker
    processes (``workers``; spawning them, their imports and their nutpie compiles included),
    poststratify and publish estimates, draws and manifest to a local folder. Not included,
    and printed separately: simulating and writing the input, and starting the temporary
    Prefect API server, which a real deployment has already running. ``--engine inline`` times
    ``misterp.pipeline.wave.run_wave_inline`` instead (one process, no Prefect).
misterp_seconds_per_model
    ``wave_seconds / N``: end-to-end wall time per model, overheads included.
naive_seconds_per_model
    Mean wall time of building and sampling one sampled model the naive way: Bambi on one
    Bernoulli row per respondent in the question's base, misterp's formula and priors, PyMC's
    own NUTS (``model.fit``) with misterp's draws, tune, chains and target_accept on all
    cores. Predicting and poststratifying its cells is timed separately and not counted, so
    the ratio errs against misterp.
ratio
    ``naive_seconds_per_model / misterp_seconds_per_model``.
converged
    Models whose fit met the core thresholds (R-hat, bulk/tail ESS, divergences), after
    misterp's retry ladder.
peak_rss_mb
    Largest peak resident set size (``VmHWM``) of any single process during the wave: this
    process (which runs the flow, prepares and publishes), the fit workers and the Prefect
    server, polled every 0.2 s, cross-checked with ``RUSAGE_CHILDREN`` for reaped workers.
    The naive fits run after this is taken.

Agreement: each sampled model's poststratified estimate (every target group) is computed
from the naive posterior and from misterp's stored draws with the same fixed cell weights
(census; for a question asked within a base, census x misterp's posterior-mean base share),
and the two posterior means must agree within ``|a - b| <= 4 sqrt(mcse_a^2 + mcse_b^2)``.

Run from the repository root: ``.venv/bin/python bench/wave_throughput.py --models 40``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

# misterp logs its compile times at INFO. Spawned fit workers re-import this module as
# ``__mp_main__``, so this also reaches them, and the bench can read the times from the run logs.
logging.getLogger("misterp").setLevel(logging.INFO)

WAVE_ID = "2026-10"
#: The issue's wave: 2 markets x 25 brands x (awareness + consideration + 18 associations).
DEFAULT_MODELS = 1000
MAX_MARKETS = 2
MARKET_CODES = ("DE", "FR", "UK", "IT", "ES", "NL", "PL", "SE")
ASSOCIATION_OPTIONS = (
    "innovative",
    "trustworthy",
    "good_value",
    "sustainable",
    "premium",
    "reliable",
    "modern",
    "friendly",
    "high_quality",
    "healthy",
    "local",
    "expert",
    "popular",
    "stylish",
    "safe",
    "convenient",
    "caring",
    "fun",
)
#: Agreement criterion: posterior means within this many combined Monte Carlo standard errors.
AGREEMENT_Z = 4.0
#: How often the memory monitor polls the process tree.
RSS_POLL_SECONDS = 0.2


# -- the wave ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveShape:
    """Markets x brands x (awareness + consideration + association options)."""

    markets: int
    brands: int
    association_options: int

    @property
    def models(self) -> int:
        """Models misterp plans: one per market x question x option."""
        return self.markets * self.brands * (2 + self.association_options)

    def describe(self) -> str:
        """The shape in words, for the table."""
        return (
            f"{self.markets} markets x {self.brands} brands x "
            f"(aware + consider + {self.association_options} associations)"
        )


def wave_shape(models: int) -> WaveShape:
    """The wave closest to ``models`` models, as close to the issue's shape as possible.

    Two markets and up to 18 association options per brand, then as many brands as needed;
    ties go to more association options (the issue's shape for 1,000).
    """
    if models < 1:
        raise ValueError("--models must be positive")
    markets = MAX_MARKETS if models >= 2 * MAX_MARKETS else 1
    per_market = models / markets
    best: tuple[float, int, WaveShape] | None = None
    for brands in range(1, max(1, round(per_market / 2)) + 1):
        options = min(len(ASSOCIATION_OPTIONS), max(0, round(per_market / brands) - 2))
        shape = WaveShape(markets, brands, options)
        rank = (abs(shape.models - models), -options, shape)
        if best is None or rank[:2] < best[:2]:
            best = rank
    assert best is not None
    return best[2]


def truth_spec(shape: WaveShape, respondents: int) -> Any:
    """The ``WaveTruthSpec`` of a shape; the last brand is the rare one when there are 3+."""
    from misterp.mrp.simulate import WaveTruthSpec

    brands = tuple(f"brand{i:02d}" for i in range(1, shape.brands + 1))
    return WaveTruthSpec(
        markets=MARKET_CODES[: shape.markets],
        brands=brands,
        n_respondents=respondents,
        association_options=ASSOCIATION_OPTIONS[: shape.association_options],
        rare_brand=brands[-1] if len(brands) >= 3 else None,
    )


# -- memory -----------------------------------------------------------------------------------


@dataclass
class ProcessMemory:
    """What the monitor saw of one process."""

    pid: int
    role: str
    peak_kb: int = 0
    rss_kb: list[int] = field(default_factory=list)
    cpu_seconds: float = 0.0  # user + system since the monitor started (or the process did)
    cpu_baseline: float | None = None


def _proc_status_kb(pid: int) -> tuple[int, int] | None:
    """``(VmHWM, VmRSS)`` in kB from ``/proc``; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            text = handle.read()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            name, amount, *_ = line.split()
            values[name[:-1]] = int(amount)
    if "VmRSS" not in values:
        return None
    return values.get("VmHWM", values["VmRSS"]), values["VmRSS"]


def _role(process: Any) -> str:
    if process.pid == os.getpid():
        return "bench process"
    with contextlib.suppress(Exception):
        command = " ".join(process.cmdline())
        if "uvicorn" in command:
            return "prefect server"
        if "resource_tracker" in command:
            return "mp resource tracker"
        if "spawn_main" in command or "forkserver" in command:
            return "fit worker"
    return "other child"


class RssMonitor:
    """Polls the peak and current RSS of this process and all its descendants.

    Peak RSS per process comes from the kernel (``VmHWM``), so a spike between two polls is
    not missed; only a process that lives shorter than one poll is.
    """

    def __init__(self, interval: float = RSS_POLL_SECONDS) -> None:
        import psutil

        self._psutil = psutil
        self._interval = interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.processes: dict[int, ProcessMemory] = {}
        self._thread = threading.Thread(target=self._run, name="rss-monitor", daemon=True)

    def __enter__(self) -> RssMonitor:
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def poll(self) -> None:
        """Record every live process of the tree once."""
        me = self._psutil.Process()
        try:
            tree = [me, *me.children(recursive=True)]
        except self._psutil.Error:
            tree = [me]
        for process in tree:
            status = _proc_status_kb(process.pid)
            if status is None:
                continue
            with self._lock:
                seen = self.processes.get(process.pid)
                if seen is None:
                    seen = self.processes[process.pid] = ProcessMemory(process.pid, _role(process))
                    if process.pid == os.getpid():  # count only what it does from now on
                        with contextlib.suppress(self._psutil.Error):
                            times = process.cpu_times()
                            seen.cpu_baseline = times.user + times.system
                seen.peak_kb = max(seen.peak_kb, status[0])
                seen.rss_kb.append(status[1])
                with contextlib.suppress(self._psutil.Error):
                    times = process.cpu_times()
                    used = times.user + times.system - (seen.cpu_baseline or 0.0)
                    seen.cpu_seconds = max(seen.cpu_seconds, used)

    def snapshot(self) -> dict[int, ProcessMemory]:
        """A copy of what was seen so far."""
        self.poll()
        with self._lock:
            return {
                pid: ProcessMemory(
                    m.pid, m.role, m.peak_kb, list(m.rss_kb), m.cpu_seconds, m.cpu_baseline
                )
                for pid, m in self.processes.items()
            }


def children_peak_kb() -> int:
    """Largest peak RSS of any reaped child (Linux reports kB)."""
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)


# -- running misterp --------------------------------------------------------------------------


@dataclass
class WaveRun:
    """How a wave run went, as far as the bench can see from outside."""

    seconds: float
    startup_seconds: float = float("nan")
    summary: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    # fit key -> its task run's wall time over the fits that run carried
    task_seconds: dict[str, float] = field(default_factory=dict)
    compile_seconds: list[float] = field(default_factory=list)
    memory: dict[int, ProcessMemory] = field(default_factory=dict)
    children_peak_kb: int = 0


def configure_environment(work: Path) -> None:
    """Settings that must be in place before Prefect is imported (workers inherit them).

    A Prefect home of its own keeps the bench's temporary API database out of the user's
    and the test suite's; misterp's logger goes to the run logs, as with ``misterp run``.
    """
    os.environ.setdefault("PREFECT_HOME", str(work / "prefect-home"))
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "misterp")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@contextlib.contextmanager
def prefect_api() -> Iterator[tuple[str, float]]:
    """The Prefect API to run against, and how long starting it took (0 if already set).

    Started here, rather than implicitly by the first flow call, so that its start-up is not
    charged to the wave: a production wave runs against a server that is already up.
    """
    url = os.environ.get("PREFECT_API_URL")
    if url:
        yield url, 0.0
        return
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    started = time.perf_counter()
    server = SubprocessASGIServer()
    server.start(timeout=int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]))
    seconds = time.perf_counter() - started
    os.environ["PREFECT_API_URL"] = server.api_url  # for the spawned workers
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            yield server.api_url, seconds
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        _stop_sending_logs()
        server.stop()


def _stop_sending_logs() -> None:
    """Flush the run logs to the API, then stop shipping logs to a server about to go away.

    Otherwise the naive fits' log lines are queued for the stopped server and the failed
    delivery is printed at exit, after the summary line that must come last.
    """
    from prefect.logging.handlers import APILogHandler, APILogWorker

    APILogWorker.drain_all(timeout=30)
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                if isinstance(handler, APILogHandler):
                    logger.removeHandler(handler)


def _fit_keys(task_run_name: str) -> list[str]:
    """The model keys of a fit task run's name, ``fit KEY, KEY, ...``.

    >>> _fit_keys("fit DE/q/a, DE/q/b")
    ['DE/q/a', 'DE/q/b']
    """
    return task_run_name.removeprefix("fit ").split(", ")


def _task_runs(flow_run_id: Any, expected_fits: int, wait: float = 30.0) -> list[Any]:
    """All task runs of the flow run, waiting for the server to record the workers' events."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + wait
    runs: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            runs, offset = [], 0
            while True:
                page = client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                    limit=200,
                    offset=offset,
                )
                runs.extend(page)
                offset += len(page)
                if len(page) < 200:
                    break
            finished = sum(
                len(_fit_keys(r.name))
                for r in runs
                if r.name.startswith("fit ") and r.end_time is not None
            )
            if finished >= expected_fits or time.monotonic() > deadline:
                return runs
            time.sleep(1.0)


def _compile_seconds(flow_run_id: Any) -> list[float]:
    """Compile times that misterp logged in the workers ("compiled ... in X s")."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    found: list[float] = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200,
                offset=offset,
            )
            for log in page:
                text = log.message
                if text.startswith("compiled ") and text.endswith(" s"):
                    with contextlib.suppress(ValueError):
                        found.append(float(text.rsplit(" in ", 1)[1][:-2]))
            offset += len(page)
            if len(page) < 200:
                return found


def _phases(runs: Sequence[Any], flow_seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """Wall time per step of the flow, and per fit task, from the task runs' timestamps."""
    spans: dict[str, tuple[Any, Any]] = {}
    fits: dict[str, float] = {}
    fit_start, fit_end = None, None
    for run in runs:
        if run.start_time is None or run.end_time is None:
            continue
        if run.name.startswith("fit "):
            # a task run fits one or several models: "fit KEY, KEY, ..."; each gets its share
            keys = _fit_keys(run.name)
            for key in keys:
                fits[key] = (run.end_time - run.start_time).total_seconds() / len(keys)
            fit_start = run.start_time if fit_start is None else min(fit_start, run.start_time)
            fit_end = run.end_time if fit_end is None else max(fit_end, run.end_time)
        else:
            spans[run.name.rsplit("-", 1)[0]] = (run.start_time, run.end_time)
    phases: dict[str, float] = {}
    for step, (start, end) in sorted(spans.items(), key=lambda item: item[1][0]):
        if fit_start is not None and fit_end is not None and start > fit_start:
            if "stage" in spans:
                pool_start = (fit_start - spans["stage"][1]).total_seconds()
                phases["pool start (spawn, imports)"] = pool_start
            phases["fits (first start to last end)"] = (fit_end - fit_start).total_seconds()
            fit_start = fit_end = None
        phases[step] = (end - start).total_seconds()
    if fit_start is not None and fit_end is not None:
        phases["fits (first start to last end)"] = (fit_end - fit_start).total_seconds()
    phases["flow overhead (rest)"] = flow_seconds - sum(phases.values())
    return phases, fits


def run_flow(config: dict[str, Any], monitor: RssMonitor) -> WaveRun:
    """The production path: the ``run-wave`` flow, fits in worker processes."""
    with prefect_api() as (_url, startup):
        from flows.wave import run_wave

        # the flow takes the config's path (a run parameter is never the config)
        path = Path(config["output"]).parent / "wave.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        started = time.perf_counter()
        state = run_wave(config=str(path), wave=WAVE_ID, return_state=True)
        seconds = time.perf_counter() - started
        memory = monitor.snapshot()
        reaped = children_peak_kb()
        # The flow ends Failed when some model did not converge (after publishing); the
        # bench reads the outcome from the manifest, so only the run's id matters here.
        summary = {"state": state.type.value, "message": state.message}
        flow_run_id = state.state_details.flow_run_id
        runs = _task_runs(flow_run_id, expected_fits(config))
        phases, fits = _phases(runs, seconds)
        compiles = _compile_seconds(flow_run_id)
    return WaveRun(seconds, startup, summary, phases, fits, compiles, memory, reaped)


def expected_fits(config: dict[str, Any]) -> int:
    """Models the wave planned (all are fitted: the output folder starts empty)."""
    from misterp.storage import MANIFEST, ResultStore

    manifest = ResultStore(config["output"]).read_json(f"{config['wave']}/{MANIFEST}")
    return len(manifest["models"])


def run_inline(config: dict[str, Any], monitor: RssMonitor) -> WaveRun:
    """The orchestrator-free path: every fit in this process, one after another."""
    from misterp.mrp.config import parse_config
    from misterp.pipeline.wave import run_wave_inline

    started = time.perf_counter()
    outcome = run_wave_inline(parse_config(config))
    seconds = time.perf_counter() - started
    summary = {"counts": outcome.counts.model_dump(), "fitted": len(outcome.manifest.models)}
    return WaveRun(
        seconds, 0.0, summary, memory=monitor.snapshot(), children_peak_kb=children_peak_kb()
    )


def fit_table(manifest: dict[str, Any]) -> pd.DataFrame:
    """One row per model from the manifest: status, attempts, where the fit's time went."""
    rows = []
    for model in manifest["models"]:
        attempts = model["attempts"]
        reports = [a["report"] or {} for a in attempts]
        last = reports[-1] if reports else {}
        sampling = sum(r.get("seconds") or 0.0 for r in reports)
        rows.append(
            {
                "key": model["key"],
                "status": model["status"],
                "estimate_status": model["estimate_status"],
                "attempts": len(attempts),
                "fit_seconds": model["seconds"] or 0.0,
                "sampling_seconds": sampling,
                "r_hat_max": last.get("r_hat_max"),
                "ess_bulk_min": last.get("ess_bulk_min"),
                "ess_tail_min": last.get("ess_tail_min"),
                "divergences": last.get("divergences"),
                "steps_per_draw": (reports[0] if reports else {}).get("steps_per_draw"),
                "n_respondents": model["n_respondents"],
                # issue 23: draws per chain the first attempt was judged on, against its cap
                "first_draws": (reports[0] if reports else {}).get("draws"),
                "first_cap": (attempts[0]["sampler"].get("draws") if attempts else None),
                "limited_by": (attempts[-1].get("limited_by") if attempts else None),
            }
        )
    frame = pd.DataFrame(rows)
    frame["diagnostics_seconds"] = frame["fit_seconds"] - frame["sampling_seconds"]
    return frame


# -- the naive fit ----------------------------------------------------------------------------


@dataclass
class NaiveFit:
    """One model fitted the naive way, and how it compares with misterp's posterior."""

    key: str
    rows: int
    fit_seconds: float
    predict_seconds: float
    report: Any
    agreement: pd.DataFrame


def choose_naive_sample(specs: Sequence[Any], size: int, seed: int) -> list[Any]:
    """About ``size`` models spread over question kinds (aware, assoc, consider), reproducibly."""
    rng = np.random.default_rng(seed)
    by_kind: dict[str, list[Any]] = {}
    for spec in specs:
        by_kind.setdefault(spec.question_id.split("_", 1)[0], []).append(spec)
    preferred = ("aware", "assoc", "consider")
    order = sorted(by_kind, key=lambda k: preferred.index(k) if k in preferred else len(preferred))
    queues = {k: [by_kind[k][i] for i in rng.permutation(len(by_kind[k]))] for k in order}
    chosen: list[Any] = []
    while len(chosen) < size and any(queues.values()):
        for kind in order:
            if queues[kind] and len(chosen) < size:
                chosen.append(queues[kind].pop())
    return chosen


def respondent_rows(simulated: Any, spec: Any, layout: Any) -> pd.DataFrame:
    """One Bernoulli row per respondent in the question's base, categories as misterp's cells.

    The same category order as the cell layout makes the same reference levels, so both fits
    have the same parameters, and the same cells can be predicted from both.
    """
    answers = simulated.answers
    answers = answers[
        (answers["question_id"] == spec.question_id) & (answers["option"] == spec.option)
    ]
    people = simulated.respondents[simulated.respondents["market"] == spec.market]
    rows = answers[["respondent_id", "selected"]].merge(people, on="respondent_id")
    for column in layout.demographics:
        categories = layout.frame[column].cat.categories
        rows[column] = pd.Categorical(rows[column].astype(str), categories=categories)
    rows["selected"] = rows["selected"].astype(np.int64)
    return rows[["selected", *layout.demographics]]


def naive_model(formula: str, rows: pd.DataFrame, priors: Any) -> Any:
    """Bambi's Bernoulli model on respondent rows with misterp's formula and priors.

    Built by ``misterp.mrp.model.bambi_model``, as misterp's own fits are, so both target the same
    posterior (binomial counts and their Bernoulli rows have one likelihood).
    """
    from misterp.mrp.model import bambi_model
    from misterp.mrp.specs import RESPONSE

    right = formula.split("~", 1)[1] if formula.startswith(RESPONSE) else formula
    return bambi_model(f"selected ~{right}", rows, "bernoulli", priors)


def _chains(draws: np.ndarray, chains: int) -> np.ndarray:
    """Stored (thinned) draws back to ``(chain, draw, ...)``.

    misterp keeps evenly spaced draws of the chains laid end to end, so equal blocks are the
    chains (exactly, when ``chains`` divides the stored draws); else one chain.
    """
    if chains > 1 and draws.shape[0] % chains == 0:
        return draws.reshape(chains, draws.shape[0] // chains, *draws.shape[1:])
    return draws[None]


def _estimates(cell_p: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(chain, draw, groups)`` weighted cell means from ``(chain, draw, cells)``."""
    return (cell_p @ weights.T) / weights.sum(axis=1)


def agreement(
    naive_p: np.ndarray,
    misterp_p: np.ndarray,
    weights: np.ndarray,
    groups: Sequence[str],
    weighting: str,
) -> pd.DataFrame:
    """Posterior means of each group's estimate under both fits, with MCSE and z."""
    import arviz as az

    naive_est, misterp_est = _estimates(naive_p, weights), _estimates(misterp_p, weights)
    rows = []
    for i, group in enumerate(groups):
        a, b = naive_est[..., i], misterp_est[..., i]
        mcse_a, mcse_b = float(az.mcse(a)), float(az.mcse(b))
        z = abs(a.mean() - b.mean()) / math.hypot(mcse_a, mcse_b)
        rows.append(
            {
                "group": group,
                "weights": weighting,
                "naive_mean": a.mean(),
                "misterp_mean": b.mean(),
                "naive_sd": a.std(ddof=1),
                "misterp_sd": b.std(ddof=1),
                "naive_mcse": mcse_a,
                "misterp_mcse": mcse_b,
                "z": z,
                "agree": bool(z <= AGREEMENT_Z),
            }
        )
    # Cells too: the largest standardised difference of the cell probabilities' means.
    diff = np.abs(naive_p.mean(axis=(0, 1)) - misterp_p.mean(axis=(0, 1)))
    mcse = np.hypot(np.atleast_1d(az.mcse(naive_p)), np.atleast_1d(az.mcse(misterp_p)))
    cell_z = diff / np.where(mcse > 0, mcse, np.nan)
    frame = pd.DataFrame(rows)
    frame.attrs["max_cell_z"] = float(np.nanmax(cell_z))
    return frame


def naive_fit(
    simulated: Any,
    prepared: Any,
    spec: Any,
    store: Any,
    sampler: dict[str, Any],
    seed: int,
) -> NaiveFit:
    """Fit one model the naive way and compare its poststratified posterior with misterp's."""
    from misterp.diagnostics import check_convergence
    from misterp.mrp.fits import StoredFit, read_fit, read_fit_record

    def stored(key: str) -> StoredFit | None:
        record = read_fit_record(store, prepared.wave_id, key)
        return read_fit(store, prepared.wave_id, record) if record is not None else None

    layout = prepared.layouts[spec.market]
    rows = respondent_rows(simulated, spec, layout)
    started = time.perf_counter()
    priors = prepared.config.model.priors
    model = naive_model(spec.formula, rows, priors)
    settings = {
        "draws": sampler["draws"],
        "tune": sampler["tune"],
        "chains": sampler["chains"],
        "cores": sampler["cores"],
        "target_accept": sampler["target_accept"],
        "random_seed": seed,
        "progressbar": False,
    }
    if priors.group_effects != "normal":
        # the same parametrisation as misterp's fit: Bambi samples the rewritten PyMC model,
        # so its post-processing (the Intercept un-centred) and predict() still apply
        from misterp.mrp.model import pymc_model_of

        model.backend.model = pymc_model_of(model, priors)
    idata = model.fit(**settings)
    fit_seconds = time.perf_counter() - started
    report = check_convergence(idata, seconds=fit_seconds)

    started = time.perf_counter()
    cells = layout.frame.drop(columns=["population"])
    predicted = model.predict(idata, data=cells, kind="response_params", inplace=False)
    naive_p = np.asarray(predicted["posterior"]["p"], dtype=float)  # (chain, draw, cell)
    predict_seconds = time.perf_counter() - started

    ours = stored(spec.key)
    groups = list(layout.masks)
    weights = np.stack([layout.population * layout.masks[g] for g in groups]).astype(float)
    weighting = "census"
    if spec.base_key is not None:
        base = stored(spec.base_key)
        if base is not None and base.draws is not None:
            weights = weights * base.draws.astype(float).mean(axis=0)
            weighting = "census x base"
    if ours is None or ours.draws is None:
        table = pd.DataFrame()
        table.attrs["max_cell_z"] = float("nan")
    else:
        chains = ours.report.chains if ours.report is not None else 1
        misterp_p = _chains(ours.draws.astype(float), chains)
        table = agreement(naive_p, misterp_p, weights, groups, weighting)
    return NaiveFit(spec.key, len(rows), fit_seconds, predict_seconds, report, table)


# -- the report -------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return "nan" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 86 - len(title)))


def _memory_rows(memory: dict[int, ProcessMemory]) -> pd.DataFrame:
    rows = []
    for m in sorted(memory.values(), key=lambda m: (m.role, m.pid)):
        series = m.rss_kb or [0]
        rows.append(
            {
                "role": m.role,
                "pid": m.pid,
                "peak_mb": m.peak_kb / 1024,
                "rss_25%_mb": series[len(series) // 4] / 1024,
                "rss_50%_mb": series[len(series) // 2] / 1024,
                "rss_last_mb": series[-1] / 1024,
                "cpu_s": m.cpu_seconds,
            }
        )
    return pd.DataFrame(rows)


def print_report(
    args: argparse.Namespace,
    shape: WaveShape,
    config: dict[str, Any],
    generate_seconds: float,
    run: WaveRun,
    fits: pd.DataFrame,
    naive: list[NaiveFit],
    naive_settings: dict[str, Any] | None,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    """Print the table; return the final line (printed last by the caller)."""
    models = len(fits)
    converged = int((fits["status"] == "converged").sum())
    sampler = config.get("sampler", {})
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        _section("wave")
        print(f"shape:        {shape.describe()} = {models} models")
        print(f"respondents:  {args.respondents} per market; output {config['output']}")
        print(f"sampler:      {sampler or 'misterp defaults'}; workers {config.get('workers')}")
        print(f"engine:       {args.engine}; cpus {os.cpu_count()}")
        print(f"load average: start {load[0]}, end of wave {load[1]}")
        if "state" in run.summary:
            print(f"flow run:     {run.summary['state']}: {run.summary['message']}")

        _section("time (seconds)")
        print(f"simulate + write input (not counted): {generate_seconds:8.1f}")
        print(f"prefect API start-up (not counted):   {run.startup_seconds:8.1f}")
        print(f"wave end to end:                       {run.seconds:8.1f}")
        for phase, seconds in run.phases.items():
            print(f"  {phase:<36s} {seconds:8.1f}")
        fitted = fits[fits["fit_seconds"] > 0]
        per_fit = pd.DataFrame(
            {
                "fit (fit_with_policy)": fitted["fit_seconds"],
                "  sampling (incl. compile)": fitted["sampling_seconds"],
                "  diagnostics + thinning": fitted["diagnostics_seconds"],
            }
        )
        if run.task_seconds:
            task = fitted["key"].map(run.task_seconds)
            per_fit["task run's share (fit + I/O + prefect)"] = task.to_numpy()
            per_fit["  I/O + prefect per fit"] = (task - fitted["fit_seconds"]).to_numpy()
        print("per fit:")
        print(per_fit.describe().T[["count", "mean", "50%", "min", "max"]].round(2).to_string())
        total = float(fitted["fit_seconds"].sum())
        print(f"sum of fit seconds {total:.1f} over {run.seconds:.1f} s wall")
        if run.compile_seconds:
            print(
                f"nutpie compiles: {len(run.compile_seconds)}, "
                f"{np.mean(run.compile_seconds):.1f} s each (inside the first fit per "
                "worker and market)"
            )

        _section("convergence (core thresholds, after retries)")
        print(fits["status"].value_counts().to_string())
        print(f"attempts: {fits['attempts'].value_counts().sort_index().to_dict()}")
        steps = pd.to_numeric(fits["steps_per_draw"], errors="coerce")
        print(
            f"leapfrog steps per draw at attempt 1: mean {steps.mean():.1f}, "
            f"median {steps.median():.1f}, max {steps.max():.1f}"
        )
        print(
            f"worst: r_hat {fits['r_hat_max'].max():.4f}, bulk ESS {fits['ess_bulk_min'].min():.0f}"
            f", tail ESS {fits['ess_tail_min'].min():.0f}, "
            f"divergences {fits['divergences'].max():.0f}"
        )
        judged = fits.dropna(subset=["first_draws"])
        if len(judged):
            at_cap = (judged["first_draws"] >= judged["first_cap"]).mean()
            print(
                f"first attempt judged at draws per chain: "
                f"{judged['first_draws'].astype(int).value_counts().sort_index().to_dict()}; "
                f"mean {judged['first_draws'].mean():.0f}; reached the cap {at_cap:.1%}; "
                f"retried {(fits['attempts'] > 1).mean():.1%}"
            )
            criteria = fits["limited_by"].fillna("not recorded").str.split(" of ").str[0]
            print(f"limited by: {criteria.value_counts().to_dict()}")
        not_ok = fits[fits["status"] != "converged"]
        if len(not_ok):
            print(not_ok[["key", "status", "attempts", "r_hat_max", "ess_bulk_min"]].to_string())

        _section("memory (MB) and CPU seconds per process during the wave")
        memory = _memory_rows(run.memory)
        print(memory.round(0).to_string(index=False) if len(memory) else "(no samples)")
        print(f"largest reaped child (RUSAGE_CHILDREN): {run.children_peak_kb / 1024:.0f}")

        _section("naive fit vs misterp (sampled models)")
        if not naive:
            print("skipped (--skip-naive)")
        else:
            print(f"naive settings: Bambi bernoulli on respondent rows, PyMC NUTS {naive_settings}")
            for fit in naive:
                ours = fits.loc[fits["key"] == fit.key].iloc[0]
                r = fit.report
                print(
                    f"\n{fit.key}: {fit.rows} respondent rows; naive fit {fit.fit_seconds:.1f} s "
                    f"(+ predict {fit.predict_seconds:.1f} s), r_hat {r.r_hat_max:.3f}, "
                    f"ESS {r.ess_bulk_min:.0f}/{r.ess_tail_min:.0f}, {r.divergences} div; "
                    f"misterp fit {ours['fit_seconds']:.1f} s, {ours['status']}"
                )
                if len(fit.agreement):
                    print(fit.agreement.round(4).to_string(index=False))
                    print(
                        f"max cell z (cell probabilities): {fit.agreement.attrs['max_cell_z']:.2f}"
                    )
            tables = [f.agreement for f in naive if len(f.agreement)]
            agree = pd.concat(tables) if tables else pd.DataFrame({"agree": []})
            print(
                f"\nagreement: {int(agree['agree'].sum())}/{len(agree)} estimates within "
                f"{AGREEMENT_Z:g} MCSE"
            )

    naive_seconds = float(np.mean([f.fit_seconds for f in naive])) if naive else float("nan")
    misterp_seconds = run.seconds / models
    ratio = naive_seconds / misterp_seconds
    peak_kb = max([m.peak_kb for m in run.memory.values()] + [run.children_peak_kb])
    return (
        f"models={models} converged={converged} wave_seconds={_fmt(run.seconds, 1)} "
        f"naive_seconds_per_model={_fmt(naive_seconds)} "
        f"misterp_seconds_per_model={_fmt(misterp_seconds, 3)} ratio={_fmt(ratio, 1)} "
        f"peak_rss_mb={peak_kb / 1024:.0f}"
    )


# -- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=DEFAULT_MODELS, help="about N models")
    parser.add_argument("--respondents", type=int, default=3000, help="per market")
    parser.add_argument("--naive-sample", type=int, default=5, help="models fitted naively")
    parser.add_argument("--skip-naive", action="store_true", help="no naive fits")
    parser.add_argument("--workers", type=int, default=None, help="fit processes (all cores)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", help="folder for input and results (default: temp, removed)")
    parser.add_argument("--engine", choices=("flow", "inline"), default="flow")
    parser.add_argument("--draws", type=int, help="override misterp's sampler draws")
    parser.add_argument("--tune", type=int, help="override misterp's sampler tune")
    parser.add_argument("--chains", type=int, help="override misterp's sampler chains")
    parser.add_argument(
        "--target-accept", type=float, help="override misterp's sampler target_accept"
    )
    parser.add_argument(
        "--policy",
        choices=("estimands", "all_parameters"),
        help="convergence.policy (default: misterp's, estimands); all_parameters with "
        "--check-every 0 --tune 500 is misterp before issue 23",
    )
    parser.add_argument(
        "--check-every",
        type=int,
        help="override misterp's sampler check_every (draws between looks); 0: none, the "
        "fixed run of draws judged once (misterp before issue 23)",
    )
    parser.add_argument("--naive-draws", type=int, help="naive draws (default: misterp's)")
    parser.add_argument("--naive-tune", type=int, help="naive tune (default: misterp's)")
    parser.add_argument(
        "--group-effects",
        choices=("zero_sum", "normal"),
        help="model.priors.group_effects for both misterp and the naive fit (default: misterp's)",
    )
    parser.add_argument(
        "--priors",
        type=json.loads,
        default={},
        help='model.priors overrides as JSON for both fits, e.g. \'{"group_sd": "gamma"}\'',
    )
    return parser


def _sampler_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "target_accept": args.target_accept,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.check_every is not None:
        overrides["check_every"] = args.check_every or None
    if "draws" in overrides:  # misterp keeps at most this many draws per model
        overrides["stored_draws"] = min(1000, overrides["draws"] * overrides.get("chains", 4))
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the wave, run misterp, fit the naive sample, print the table and last line."""
    args = build_parser().parse_args(argv)
    shape = wave_shape(args.models)
    work = Path(args.output or tempfile.mkdtemp(prefix="misterp-bench-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    configure_environment(work)
    print(f"wave: {shape.describe()} = {shape.models} models; work folder {work}", flush=True)
    try:
        return _run(args, shape, work)
    finally:
        if args.output is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, shape: WaveShape, work: Path) -> int:
    from misterp.mrp.config import parse_config
    from misterp.mrp.simulate import simulate_wave
    from misterp.mrp.staging import load_staged_wave
    from misterp.storage import MANIFEST, ResultStore

    load_start = os.getloadavg()
    started = time.perf_counter()
    simulated = simulate_wave(args.seed, truth_spec(shape, args.respondents))
    input_uri = str(work / "input" / WAVE_ID)
    simulated.write(input_uri)
    generate_seconds = time.perf_counter() - started

    config = simulated.config(input_uri, str(work / "results"))
    config["wave"] = WAVE_ID
    if args.workers is not None:
        config["workers"] = args.workers
    if overrides := _sampler_overrides(args):
        config["sampler"] = overrides
    if args.policy:
        config["convergence"] = {"policy": args.policy}
    priors = dict(args.priors) | (
        {"group_effects": args.group_effects} if args.group_effects else {}
    )
    if priors:
        config["model"] = {"priors": priors}
    with RssMonitor() as monitor:
        engine = run_flow if args.engine == "flow" else run_inline
        run = engine(config, monitor)
    load_end = os.getloadavg()

    store = ResultStore(config["output"])
    manifest = store.read_json(f"{WAVE_ID}/{MANIFEST}")
    fits = fit_table(manifest)

    naive: list[NaiveFit] = []
    naive_settings: dict[str, Any] | None = None
    if not args.skip_naive and args.naive_sample > 0:
        prepared = load_staged_wave(store, WAVE_ID)
        sampler = parse_config(config).sampler
        naive_settings = {
            "draws": args.naive_draws or sampler.draws,
            "tune": args.naive_tune or sampler.tune,
            "chains": sampler.chains,
            "cores": min(sampler.chains, os.cpu_count() or 1),
            "target_accept": sampler.target_accept,
        }
        sample = choose_naive_sample(prepared.specs, args.naive_sample, args.seed)
        for number, spec in enumerate(sample, start=1):
            print(f"naive fit {number}/{len(sample)}: {spec.key}", flush=True)
            naive.append(naive_fit(simulated, prepared, spec, store, naive_settings, args.seed))

    sys.stderr.flush()
    load = (load_start, load_end)
    last = print_report(
        args, shape, config, generate_seconds, run, fits, naive, naive_settings, load
    )
    sys.stdout.flush()
    sys.stderr.flush()
    print(last, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
