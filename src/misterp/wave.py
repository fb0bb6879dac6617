"""One tracking wave as plain functions: prepare, fit, assemble, publish.

The Prefect flow in ``flows/wave.py`` calls exactly these steps and adds only parallelism,
logging context and retries on I/O; ``run_wave_inline`` runs them one after another without
any orchestrator, for notebooks and tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from misterp.cells import CellCounts, MarketCells, aggregate_cells, build_market_cells
from misterp.config import SamplerConfig, WaveConfig
from misterp.data import WaveData
from misterp.fitting import CONVERGED, FAILED, NOT_CONVERGED, FitResult, fit_with_policy
from misterp.health import HEALTH_FILE, WaveHealth, wave_health
from misterp.poststratify import SUMMARY_COLUMNS, draws_frame, poststratify, summarise
from misterp.raking import rake_weights, sample_shares
from misterp.specs import ModelSpec, plan_model_specs
from misterp.staging import (
    STAGED,
    fit_settings_hash,
    load_staged_wave,
    plan_refits,
    previous_attempts,
    read_current_fits,
    read_fit_record,
    resume_settings,
    stage_wave,
    write_fit,
)
from misterp.storage import ResultStore
from misterp.validation import read_wave

__all__ = [
    "ESTIMATE_COLUMNS",
    "FitSummary",
    "PreparedWave",
    "WaveOutcome",
    "assemble_estimates",
    "default_wave_id",
    "fit_and_record",
    "fit_prepared",
    "fit_staged",
    "open_staged_wave",
    "prepare_wave",
    "publish_wave",
    "run_wave_inline",
]

logger = logging.getLogger(__name__)

#: Columns of ``estimates.parquet``, in order.
ESTIMATE_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "question_id",
    "option",
    "brand",
    "base",
    "target_group",
    *SUMMARY_COLUMNS,
    "n",
    "raw_mean",
    "raked_mean",
    "status",
    "r_hat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "attempts",
    "note",
)

_SEVERITY = {CONVERGED: 0, NOT_CONVERGED: 1, FAILED: 2}


def default_wave_id(now: dt.datetime | None = None) -> str:
    """The current month, ``YYYY-MM``: monthly trackers name waves this way."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m")


@dataclass
class PreparedWave:
    """Everything the fits need, computed once: validated data, specs, cells and shares."""

    config: WaveConfig
    wave_id: str
    data: WaveData | None  # None when read back from the staged store (fit workers, re-runs)
    specs: list[ModelSpec]
    layouts: dict[str, MarketCells]
    counts: dict[str, CellCounts]
    shares: pd.DataFrame
    input_hashes: dict[str, str] = field(default_factory=dict)
    stage_id: str | None = None

    def spec(self, key: str) -> ModelSpec:
        """The planned spec with this key."""
        for spec in self.specs:
            if spec.key == key:
                return spec
        raise KeyError(f"model '{key}' is not planned in wave {self.wave_id}")


@dataclass
class WaveOutcome:
    """What a finished wave produced and where."""

    wave_id: str
    output_uri: str
    estimates: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def health(self) -> WaveHealth:
        """Convergence of every model, problems first."""
        return wave_health(self.manifest)

    @property
    def status_counts(self) -> dict[str, int]:
        """Models per status."""
        counts: dict[str, int] = self.manifest["counts"]
        return counts


def _frame_hash(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def prepare_wave(config: WaveConfig) -> PreparedWave:
    """Read and validate the input, plan the models and aggregate their cells.

    Raises ``InputValidationError`` (every input problem at once) or ``FormulaError``; nothing
    is written in either case.
    """
    wave_id = config.wave or default_wave_id()
    data = read_wave(config.input, config.demographics, storage_options=config.storage_options)
    _check_target_groups(config, data)
    specs = plan_model_specs(data, config.model)
    layouts = build_market_cells(data, config.target_groups)
    counts = aggregate_cells(data, layouts, specs)
    shares = sample_shares(data, rake_weights(data), config.target_groups)
    hashes = {
        "respondents": _frame_hash(data.respondents),
        "answers": _frame_hash(data.answers),
        "poststrat": _frame_hash(data.poststrat),
        "questions": _frame_hash(data.questions),
    }
    logger.info(
        "wave %s: %d respondents, %d markets, %d models planned",
        wave_id,
        len(data.respondents),
        len(layouts),
        len(specs),
    )
    return PreparedWave(config, wave_id, data, specs, layouts, counts, shares, hashes)


def _check_target_groups(config: WaveConfig, data: WaveData) -> None:
    """A target group naming a level the census does not have would silently be empty."""
    problems = []
    for name, definition in config.target_groups.items():
        for column, levels in definition.items():
            known = set(data.poststrat[column].astype(str))
            for level in levels:
                if str(level) not in known:
                    problems.append(
                        f"  target_groups.{name}.{column}: level '{level}' is not in the census "
                        f"(poststrat levels: {', '.join(sorted(known))})"
                    )
    if problems:
        from misterp.config import ConfigError

        raise ConfigError("invalid target groups\n" + "\n".join(problems))


def fit_prepared(
    prepared: PreparedWave, spec: ModelSpec, sampler: SamplerConfig | None = None
) -> FitResult:
    """Fit one planned spec of a prepared wave (from ``sampler`` instead of the config's)."""
    config = prepared.config
    return fit_with_policy(
        spec,
        prepared.layouts[spec.market],
        prepared.counts[spec.key],
        priors=config.model.priors,
        sampler=sampler or config.sampler,
        thresholds=config.convergence,
        policy=config.retry,
    )


def assemble_estimates(
    prepared: PreparedWave, results: Mapping[str, FitResult]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Poststratify every fit into the estimates table and per-model draws.

    A conditional question is weighted by its base model's draws; its status is the worse of
    its own and its base's, because a bad base makes the weights bad.
    """
    shares: dict[tuple[str, str, str, str], dict[Any, Any]] = {
        (r["market"], r["question_id"], r["option"], r["target_group"]): r
        for r in prepared.shares.to_dict("records")
    }
    rows: list[dict[str, Any]] = []
    all_draws: dict[str, pd.DataFrame] = {}
    for spec in prepared.specs:
        result = results.get(spec.key)
        layout = prepared.layouts[spec.market]
        status = result.status if result is not None else FAILED
        notes: list[str] = []
        if result is None:
            notes.append("no fit result")
        elif result.status == FAILED:
            notes.append((result.error or "fit failed").splitlines()[0])
        elif result.status == NOT_CONVERGED and result.report is not None:
            notes.append(
                "; ".join(result.report.failures(prepared.config.convergence)) or "not converged"
            )
        base_draws = None
        if spec.base_key is not None:
            base = results.get(spec.base_key)
            if base is None or base.cell_draws is None:
                status, base_draws = FAILED, None
                notes.append(f"base model {spec.base_key} has no posterior")
            else:
                base_draws = base.cell_draws
                if _SEVERITY[base.status] > _SEVERITY[status]:
                    status = base.status
                    notes.append(f"base model {spec.base_key} is {base.status}")
        estimates: dict[str, np.ndarray] = {}
        usable = result is not None and result.cell_draws is not None and status != FAILED
        if usable and result is not None and result.cell_draws is not None:
            estimates = poststratify(result.cell_draws, layout.population, layout.masks, base_draws)
            all_draws[spec.key] = draws_frame(estimates)
        report = result.report if result is not None else None
        for group in layout.masks:
            summary = (
                summarise(estimates[group])
                if group in estimates
                else dict.fromkeys(SUMMARY_COLUMNS, np.nan)
            )
            key = (spec.market, spec.question_id, spec.option, group)
            share = shares.get(key)
            rows.append(
                {
                    "wave": prepared.wave_id,
                    "market": spec.market,
                    "question_id": spec.question_id,
                    "option": spec.option,
                    "brand": spec.brand,
                    "base": f"{spec.base_question}={spec.base_option}"
                    if spec.base_question
                    else None,
                    "target_group": group,
                    **summary,
                    "n": int(share["n"]) if share is not None else 0,
                    "raw_mean": float(share["raw_mean"]) if share is not None else np.nan,
                    "raked_mean": float(share["raked_mean"]) if share is not None else np.nan,
                    "status": status,
                    "r_hat_max": report.r_hat_max if report else np.nan,
                    "ess_bulk_min": report.ess_bulk_min if report else np.nan,
                    "ess_tail_min": report.ess_tail_min if report else np.nan,
                    "divergences": report.divergences if report else -1,
                    "attempts": len(result.attempts) if result is not None else 0,
                    "note": "; ".join(notes) or None,
                }
            )
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    return frame, all_draws


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("misterp", "bambi", "pymc", "pytensor", "nutpie", "pandera", "balance"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def draws_path(spec: ModelSpec) -> str:
    """Where a model's poststratified draws live, relative to the wave folder."""
    return f"draws/{spec.market}/{spec.question_id}/{spec.option}.parquet"


def publish_wave(
    prepared: PreparedWave,
    results: Mapping[str, FitResult],
    *,
    started_at: float | None = None,
) -> WaveOutcome:
    """Write estimates, draws and finally the manifest to ``OUTPUT/WAVE/``.

    The manifest is retracted before anything is written and published last, so an
    interrupted run never looks complete.
    """
    config = prepared.config
    store = ResultStore(config.output, config.storage_options)
    wave = prepared.wave_id
    store.retract(wave)
    estimates, draws = assemble_estimates(prepared, results)
    for spec in prepared.specs:
        if spec.key in draws:
            store.write_parquet(f"{wave}/{draws_path(spec)}", draws[spec.key])
    store.write_parquet(f"{wave}/estimates.parquet", estimates)
    model_status = estimates.drop_duplicates(["market", "question_id", "option"])
    counts = {
        s: int((model_status["status"] == s).sum()) for s in (CONVERGED, NOT_CONVERGED, FAILED)
    }
    estimate_status = {
        f"{r.market}/{r.question_id}/{r.option}": r.status
        for r in model_status.itertuples(index=False)
    }
    models = []
    for spec in prepared.specs:
        result = results.get(spec.key)
        models.append(
            {
                "key": spec.key,
                "spec": spec.to_dict(),
                "spec_hash": spec.spec_hash,
                "data_hash": prepared.counts[spec.key].data_hash,
                "status": result.status if result is not None else FAILED,
                "estimate_status": estimate_status[spec.key],
                "attempts": [a.to_dict() for a in result.attempts] if result else [],
                "seconds": result.seconds if result else None,
                "fit_id": result.extra.get("fit_id") if result else None,
                "n_respondents": int(prepared.counts[spec.key].n.sum()),
                "draws": draws_path(spec) if spec.key in draws else None,
            }
        )
    manifest = {
        "wave": wave,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "complete": True,
        "input": config.input,
        "input_hashes": prepared.input_hashes,
        "versions": _versions(),
        "config": config.model_dump(mode="json", exclude={"storage_options"}),
        "counts": {"models": len(prepared.specs), **counts},
        "wall_seconds": time.perf_counter() - started_at if started_at else None,
        "files": {"estimates": "estimates.parquet", "draws": "draws/", "health": HEALTH_FILE},
        "models": models,
    }
    health = wave_health(manifest)
    manifest["healthy"] = health.healthy
    store.write_bytes(f"{wave}/{HEALTH_FILE}", health.to_markdown().encode())
    store.publish(wave, manifest)
    return WaveOutcome(wave, store.uri(wave), estimates, manifest)


@dataclass(frozen=True)
class FitSummary:
    """What a fit worker reports back: small, so it travels cheaply between processes.

    The draws stay in the store; the parent reads them from there when it publishes.
    """

    key: str
    status: str
    attempts: int
    seconds: float
    r_hat_max: float | None
    ess_bulk_min: float | None
    divergences: int | None
    error: str | None = None
    ess_tail_min: float | None = None
    bfmi_min: float | None = None
    failures: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, result: FitResult) -> FitSummary:
        """Summarise a fit result."""
        report = result.report
        return cls(
            key=result.spec.key,
            status=result.status,
            attempts=len(result.attempts),
            seconds=result.seconds,
            r_hat_max=report.r_hat_max if report else None,
            ess_bulk_min=report.ess_bulk_min if report else None,
            divergences=report.divergences if report else None,
            error=(result.error or "").splitlines()[0] if result.error else None,
            ess_tail_min=report.ess_tail_min if report else None,
            bfmi_min=report.bfmi_min if report else None,
            failures=result.attempts[-1].failures if result.attempts else (),
        )


# One staged wave per process: a worker fitting many models of a wave reads the cells once.
_OPEN_WAVES: dict[tuple[str, str], PreparedWave] = {}


def open_staged_wave(
    output: str, wave: str, storage_options: Mapping[str, Any] | None = None
) -> PreparedWave:
    """The staged wave, read once per process and again only if it was staged anew."""
    store = ResultStore(output, storage_options)
    stage_id = (
        store.read_json(f"{wave}/{STAGED}/plan.json")["stage_id"]
        if store.exists(f"{wave}/{STAGED}/plan.json")
        else None
    )
    cached = _OPEN_WAVES.get((output, wave))
    if cached is not None and stage_id is not None and cached.stage_id == stage_id:
        return cached
    prepared: PreparedWave = load_staged_wave(store, wave, storage_options)
    _OPEN_WAVES[(output, wave)] = prepared
    return prepared


def fit_and_record(prepared: PreparedWave, spec: ModelSpec, store: ResultStore) -> FitResult:
    """Fit one model and write its record at once, so nothing finished is lost later.

    A model that did not converge last time continues its retry ladder where it stopped, and
    its record keeps every attempt across runs.
    """
    previous = read_fit_record(store, prepared.wave_id, spec.key)
    start = resume_settings(previous, spec, prepared.counts[spec.key].data_hash, prepared.config)
    result = fit_prepared(prepared, spec, start)
    if start is not None:
        earlier = previous_attempts(previous)
        result.attempts[:0] = earlier
        logger.info("fit %s continued its retry ladder after %d attempts", spec.key, len(earlier))
    write_fit(store, prepared.wave_id, result, fit_settings_hash(prepared.config))
    return result


def fit_staged(
    output: str, wave: str, key: str, storage_options: Mapping[str, Any] | None = None
) -> FitSummary:
    """Fit one model of a staged wave: the unit a worker process or a pod runs."""
    prepared = open_staged_wave(output, wave, storage_options)
    store = ResultStore(output, storage_options)
    return FitSummary.from_result(fit_and_record(prepared, prepared.spec(key), store))


def run_wave_inline(
    config: WaveConfig,
    progress: Callable[[FitResult, int, int], None] | None = None,
    *,
    refit_all: bool = False,
) -> WaveOutcome:
    """Run a whole wave in this process, one fit after another, with no orchestrator.

    Like the flow, it stages the wave and reuses stored converged fits whose spec, data and
    settings are unchanged; ``refit_all`` fits every model again.
    """
    started = time.perf_counter()
    prepared = prepare_wave(config)
    store = ResultStore(config.output, config.storage_options)
    stage_wave(prepared, store)
    plan = plan_refits(prepared, store, refit_all=refit_all)
    logger.info("wave %s: %s", prepared.wave_id, plan.summary())
    for number, spec in enumerate(plan.to_fit, start=1):
        result = fit_and_record(prepared, spec, store)
        if progress is not None:
            progress(result, number, len(plan.to_fit))
    results = read_current_fits(prepared, store)
    return publish_wave(prepared, results, started_at=started)
