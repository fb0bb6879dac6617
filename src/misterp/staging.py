"""A prepared wave staged once in the result store, and one record per fit.

The wave's parent run validates and plans once and writes the cells every model needs to
``OUTPUT/WAVE/staged/``. Fit workers (a local process, a Kubernetes pod) read only that, never
the raw input, and write each fit to ``OUTPUT/WAVE/fits/KEY.{json,npy}`` the moment it exists,
so a lost pod loses only its unfinished fits. A re-run reads the records back and refits only
models that are missing, failed, not converged, or whose spec, data or settings changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from misterp.cells import CellCounts, MarketCells
from misterp.config import SamplerConfig, WaveConfig, parse_config
from misterp.diagnostics import ConvergenceReport, next_attempt
from misterp.fitting import CONVERGED, NOT_CONVERGED, FitAttempt, FitResult
from misterp.specs import ModelSpec
from misterp.storage import ResultStore

__all__ = [
    "RefitPlan",
    "StagedWaveMissing",
    "fit_settings_hash",
    "load_staged_wave",
    "plan_refits",
    "read_current_fits",
    "read_fit",
    "stage_wave",
    "write_fit",
]

logger = logging.getLogger(__name__)

STAGED = "staged"
FITS = "fits"
_MASK_PREFIX = "mask__"


class StagedWaveMissing(FileNotFoundError):
    """A wave that was never prepared into this store (nothing to fit or re-run)."""


def fit_settings_hash(config: WaveConfig) -> str:
    """Hash of everything besides spec and data that changes a fit's posterior or verdict.

    ``cores`` is left out: it changes the wall time, not the draws.
    """
    payload = {
        "priors": config.model.priors.model_dump(mode="json"),
        "sampler": config.sampler.model_dump(mode="json", exclude={"cores"}),
        "convergence": config.convergence.model_dump(mode="json"),
        "retry": config.retry.model_dump(mode="json"),
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the staged wave ----------------------------------------------------------------------------


def stage_wave(prepared: Any, store: ResultStore) -> None:
    """Write a ``PreparedWave``'s plan, cells, counts and sample shares to the store.

    Storage options are not written: they may hold credentials, and whoever reads the staged
    wave already has them to reach the store.
    """
    wave = prepared.wave_id
    config: WaveConfig = prepared.config
    for market, layout in prepared.layouts.items():
        cells = layout.frame.copy()
        for group, mask in layout.masks.items():
            cells[f"{_MASK_PREFIX}{group}"] = mask
        store.write_parquet(f"{wave}/{STAGED}/cells/{market}.parquet", cells)
        keys = [spec.key for spec in prepared.specs if spec.market == market]
        counts = pd.DataFrame(
            {
                "key": np.repeat(keys, layout.n_cells),
                "cell": np.tile(np.arange(layout.n_cells), len(keys)),
                "yes": np.concatenate([prepared.counts[k].yes for k in keys] or [[]]),
                "n": np.concatenate([prepared.counts[k].n for k in keys] or [[]]),
            }
        ).astype({"yes": np.int64, "n": np.int64})
        store.write_parquet(f"{wave}/{STAGED}/counts/{market}.parquet", counts)
    store.write_parquet(f"{wave}/{STAGED}/shares.parquet", prepared.shares)
    plan = {
        "wave": wave,
        "staged_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stage_id": uuid.uuid4().hex,
        "config": config.model_dump(mode="json", exclude={"storage_options"}),
        "input_hashes": prepared.input_hashes,
        "markets": {
            market: {"demographics": list(layout.demographics), "groups": list(layout.masks)}
            for market, layout in prepared.layouts.items()
        },
        "specs": [spec.to_dict() for spec in prepared.specs],
    }
    # The plan is written last: a staged folder without it is incomplete and never read.
    store.write_json(f"{wave}/{STAGED}/plan.json", plan)
    logger.info("staged wave %s: %d models", wave, len(prepared.specs))


def load_staged_wave(
    store: ResultStore, wave: str, storage_options: Mapping[str, Any] | None = None
) -> Any:
    """Read a staged wave back as a ``PreparedWave`` (without the raw respondent data)."""
    from misterp.wave import PreparedWave

    plan_path = f"{wave}/{STAGED}/plan.json"
    if not store.exists(plan_path):
        raise StagedWaveMissing(
            f"{store.uri(plan_path)} does not exist: wave '{wave}' was never prepared in "
            f"{store.root_uri}. Run the wave first (misterp run --wave {wave} ...)."
        )
    plan = store.read_json(plan_path)
    config = parse_config(
        {**plan["config"], "storage_options": dict(storage_options or store.storage_options)},
        source=store.uri(plan_path),
    )
    specs = [ModelSpec(**spec) for spec in plan["specs"]]
    layouts: dict[str, MarketCells] = {}
    counts: dict[str, CellCounts] = {}
    for market, meta in plan["markets"].items():
        cells = store.read_parquet(f"{wave}/{STAGED}/cells/{market}.parquet")
        masks = {
            group: cells[f"{_MASK_PREFIX}{group}"].to_numpy(dtype=bool) for group in meta["groups"]
        }
        frame = cells.drop(columns=[f"{_MASK_PREFIX}{group}" for group in meta["groups"]])
        layouts[market] = MarketCells(
            market=market,
            frame=frame,
            demographics=tuple(meta["demographics"]),
            masks=masks,
        )
        long = store.read_parquet(f"{wave}/{STAGED}/counts/{market}.parquet")
        for key, part in long.groupby("key", sort=False):
            part = part.sort_values("cell")
            counts[str(key)] = CellCounts(
                yes=part["yes"].to_numpy(dtype=np.int64), n=part["n"].to_numpy(dtype=np.int64)
            )
    shares = store.read_parquet(f"{wave}/{STAGED}/shares.parquet")
    return PreparedWave(
        config=config,
        wave_id=plan["wave"],
        data=None,
        specs=specs,
        layouts=layouts,
        counts=counts,
        shares=shares,
        input_hashes=plan["input_hashes"],
        stage_id=plan["stage_id"],
    )


# -- fit records --------------------------------------------------------------------------------


def _fit_path(wave: str, key: str, suffix: str) -> str:
    return f"{wave}/{FITS}/{key}.{suffix}"


def write_fit(store: ResultStore, wave: str, result: FitResult, settings_hash: str) -> None:
    """Persist one fit: its cell draws first, then the record that makes it visible."""
    key = result.spec.key
    if result.cell_draws is not None:
        store.write_array(_fit_path(wave, key, "npy"), result.cell_draws)
    else:
        store.remove(_fit_path(wave, key, "npy"))
    record = {
        "key": key,
        "spec": result.spec.to_dict(),
        "spec_hash": result.spec.spec_hash,
        "data_hash": result.data_hash,
        "settings_hash": settings_hash,
        "status": result.status,
        "attempts": [attempt.to_dict() for attempt in result.attempts],
        "seconds": result.seconds,
        "n_respondents": result.n_respondents,
        "has_draws": result.cell_draws is not None,
        "fit_id": uuid.uuid4().hex,
        "fitted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    store.write_json(_fit_path(wave, key, "json"), record)


def _report_from_dict(payload: Mapping[str, Any] | None) -> ConvergenceReport | None:
    if payload is None:
        return None
    values: dict[str, Any] = {k: (math.nan if v is None else v) for k, v in payload.items()}
    return ConvergenceReport(**values)


def read_fit_record(store: ResultStore, wave: str, key: str) -> dict[str, Any] | None:
    """The stored record of a fit, or None if it was never written."""
    path = _fit_path(wave, key, "json")
    if not store.exists(path):
        return None
    record: dict[str, Any] = store.read_json(path)
    return record


def read_fit(
    store: ResultStore, wave: str, spec: ModelSpec, record: Mapping[str, Any] | None = None
) -> FitResult | None:
    """A stored fit as a ``FitResult`` (draws included), or None if there is none."""
    record = record if record is not None else read_fit_record(store, wave, spec.key)
    if record is None:
        return None
    draws = store.read_array(_fit_path(wave, spec.key, "npy")) if record["has_draws"] else None
    attempts = previous_attempts(record)
    return FitResult(
        spec=spec,
        status=record["status"],
        attempts=attempts,
        data_hash=record["data_hash"],
        cell_draws=draws,
        seconds=float(record["seconds"] or 0.0),
        n_respondents=int(record["n_respondents"]),
        extra={"fit_id": record["fit_id"], "settings_hash": record["settings_hash"]},
    )


def resume_settings(
    record: Mapping[str, Any] | None,
    spec: ModelSpec,
    data_hash: str,
    config: WaveConfig,
) -> SamplerConfig | None:
    """Where a refit of a not converged model starts: one rung above its last attempt.

    Refitting it with the first settings and the same seed would only reproduce the same
    miss; a re-run continues the retry ladder instead. None: start from the config.
    """
    if (
        record is None
        or record.get("status") != NOT_CONVERGED
        or record.get("spec_hash") != spec.spec_hash
        or record.get("data_hash") != data_hash
        or record.get("settings_hash") != fit_settings_hash(config)
        or not record.get("attempts")
    ):
        return None
    last = record["attempts"][-1]
    report = _report_from_dict(last.get("report"))
    if report is None:
        return None
    one_more = config.retry.model_copy(update={"max_attempts": 2})
    return next_attempt(
        report, SamplerConfig(**last["sampler"]), one_more, config.convergence, attempt=1
    )


def previous_attempts(record: Mapping[str, Any] | None) -> list[FitAttempt]:
    """The attempts of a stored fit, to keep a model's whole history across re-runs."""
    if record is None:
        return []
    return [
        FitAttempt(
            sampler=a["sampler"],
            report=_report_from_dict(a["report"]),
            status=a["status"],
            error=a["error"],
            failures=tuple(a.get("failures") or ()),
        )
        for a in record.get("attempts") or []
    ]


@dataclass
class RefitPlan:
    """Which models a run must fit, and why; the rest reuse their stored converged fit."""

    to_fit: list[ModelSpec]
    reasons: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the logs: counts per reason."""
        counted: dict[str, int] = {}
        for reason in self.reasons.values():
            counted[reason] = counted.get(reason, 0) + 1
        parts = [f"{n} {reason}" for reason, n in sorted(counted.items())]
        return (
            f"{len(self.to_fit)} to fit ({', '.join(parts) or 'none'}), "
            f"{len(self.reused)} converged and unchanged (reused)"
        )


def plan_refits(prepared: Any, store: ResultStore, *, refit_all: bool = False) -> RefitPlan:
    """Compare the planned specs with the stored fit records.

    A converged fit is reused only if its spec, its data and the fit settings are unchanged;
    anything else (missing, failed, not converged, changed) is fitted again.
    """
    settings = fit_settings_hash(prepared.config)
    plan = RefitPlan(to_fit=[])
    for spec in prepared.specs:
        record = None if refit_all else read_fit_record(store, prepared.wave_id, spec.key)
        if refit_all:
            reason = "forced"
        elif record is None:
            reason = "missing"
        elif record["spec_hash"] != spec.spec_hash:
            reason = "spec changed"
        elif record["data_hash"] != prepared.counts[spec.key].data_hash:
            reason = "data changed"
        elif record["settings_hash"] != settings:
            reason = "settings changed"
        elif record["status"] != CONVERGED:
            reason = str(record["status"])
        else:
            plan.reused.append(spec.key)
            continue
        plan.to_fit.append(spec)
        plan.reasons[spec.key] = reason
    return plan


def read_current_fits(prepared: Any, store: ResultStore) -> dict[str, FitResult]:
    """The stored fit of every planned model that matches its spec, data and settings.

    A record left over from an earlier run with other data is ignored, so a fit whose refit
    was lost (a killed pod) counts as missing rather than silently reusing stale draws.
    """
    settings = fit_settings_hash(prepared.config)
    results: dict[str, FitResult] = {}
    for spec in prepared.specs:
        record = read_fit_record(store, prepared.wave_id, spec.key)
        if (
            record is None
            or record["spec_hash"] != spec.spec_hash
            or record["data_hash"] != prepared.counts[spec.key].data_hash
            or record["settings_hash"] != settings
        ):
            continue
        result = read_fit(store, prepared.wave_id, spec, record)
        if result is not None:
            results[spec.key] = result
    return results
