"""One record per fit in the result store, for every model family.

A fit writes ``OUTPUT/WAVE/fits/KEY.npy`` (its kept draws) and then ``KEY.json`` (its
``FitRecord``) the moment it finishes, so a lost worker or pod loses only unfinished fits. A
run or re-run compares the records with what it planned and refits only models that are
missing, failed, not converged or whose spec, data or settings changed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from misterp.fitting import FitResult
from misterp.lease import taken_over_runs
from misterp.mrp.records import FitRecord
from misterp.records import ConvergenceReport, RecordError
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "FITS",
    "TAKEN_OVER",
    "PlannedFit",
    "RefitPlan",
    "StoredFit",
    "fit_path",
    "plan_refits",
    "read_current_fits",
    "read_fit",
    "read_fit_record",
    "write_fit",
]

logger = logging.getLogger(__name__)

FITS = "fits"


def fit_path(wave: str, key: str, suffix: str) -> str:
    """Where a fit's record (``json``) or draws (``npy``) live, relative to the store root."""
    return f"{wave}/{FITS}/{key}.{suffix}"


@dataclass(frozen=True)
class PlannedFit:
    """What a run plans for one model: enough to tell whether a stored fit is still current."""

    key: str
    spec_hash: str
    data_hash: str


@dataclass(frozen=True)
class StoredFit:
    """A fit read back from the store: its record and its kept draws (None if it has none)."""

    record: FitRecord
    draws: np.ndarray | None

    @property
    def status(self) -> FitStatus:
        """The fit's own status."""
        return self.record.status

    @property
    def report(self) -> ConvergenceReport | None:
        """Diagnostics of the last attempt."""
        return self.record.last_report

    @property
    def error(self) -> str | None:
        """The error of the last attempt, if it raised."""
        return self.record.error


def write_fit(
    store: ResultStore,
    wave: str,
    result: FitResult,
    *,
    spec: Mapping[str, Any],
    planned: PlannedFit,
    settings_hash: str,
    n_respondents: int,
    run_id: str | None = None,
) -> FitRecord:
    """Persist one fit: its draws first, then the record that makes it visible."""
    key = result.key
    if result.draws is not None:
        store.write_array(fit_path(wave, key, "npy"), result.draws)
    else:
        store.remove(fit_path(wave, key, "npy"))
    record = FitRecord(
        key=key,
        spec=dict(spec),
        spec_hash=planned.spec_hash,
        data_hash=planned.data_hash,
        settings_hash=settings_hash,
        status=result.status,
        attempts=tuple(result.attempts),
        seconds=result.seconds,
        n_respondents=n_respondents,
        has_draws=result.draws is not None,
        run_id=run_id,
    )
    store.write_bytes(fit_path(wave, key, "json"), record.to_json())
    return record


def read_fit_record(store: ResultStore, wave: str, key: str) -> FitRecord | None:
    """The stored record of a fit, or None if it was never written.

    Raises ``RecordError`` when the record exists but cannot be read.
    """
    path = fit_path(wave, key, "json")
    if not store.exists(path):
        return None
    return FitRecord.from_json(store.read_bytes(path), store.uri(path))


def read_fit(store: ResultStore, wave: str, record: FitRecord) -> StoredFit:
    """A stored fit with its draws."""
    draws = store.read_array(fit_path(wave, record.key, "npy")) if record.has_draws else None
    return StoredFit(record, draws)


@dataclass
class RefitPlan:
    """Which models a run must fit, and why; the rest reuse their stored converged fit."""

    to_fit: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the logs: counts per reason."""
        counted = Counter(self.reasons.values())
        parts = [f"{n} {reason}" for reason, n in sorted(counted.items())]
        return (
            f"{len(self.to_fit)} to fit ({', '.join(parts) or 'none'}), "
            f"{len(self.reused)} converged and unchanged (reused)"
        )


#: Why a record is not reused when its run wrote it after losing the wave's lease.
TAKEN_OVER = "written after its run was taken over"


def _current_record(
    store: ResultStore,
    wave: str,
    planned: PlannedFit,
    settings_hash: str,
    taken_over: Mapping[str, dt.datetime] | None = None,
) -> tuple[FitRecord | None, str | None]:
    """The stored record if it is current, else None and why not.

    ``taken_over``: runs that lost the wave's lease and when; a record one of them wrote after
    that moment may have been written over a newer run's draws, so it is never current.
    """
    try:
        record = read_fit_record(store, wave, planned.key)
    except RecordError as exc:
        logger.warning("%s", exc)
        return None, "unreadable record"
    if record is None:
        return None, "missing"
    lost_at = (taken_over or {}).get(record.run_id or "")
    if lost_at is not None and dt.datetime.fromisoformat(record.fitted_at) >= lost_at:
        return None, TAKEN_OVER
    stale = record.staleness(planned.spec_hash, planned.data_hash, settings_hash)
    return (None, stale) if stale else (record, None)


def plan_refits(
    store: ResultStore,
    wave: str,
    planned: Iterable[PlannedFit],
    settings_hash: str,
    *,
    refit_all: bool = False,
) -> RefitPlan:
    """Compare the planned models with the stored fit records.

    A converged fit is reused only if it is current (same spec, data and fit settings, and
    written by a run that was not taken over); anything else (missing, failed, not converged,
    changed, unreadable) is fitted again.
    """
    plan = RefitPlan(to_fit=[])
    taken_over = {} if refit_all else taken_over_runs(store, wave)
    for model in planned:
        if refit_all:
            reason: str | None = "forced"
        else:
            record, reason = _current_record(store, wave, model, settings_hash, taken_over)
            if record is not None and record.status is not FitStatus.CONVERGED:
                reason = record.status.value
        if reason is None:
            plan.reused.append(model.key)
            continue
        plan.to_fit.append(model.key)
        plan.reasons[model.key] = reason
    return plan


def read_current_fits(
    store: ResultStore, wave: str, planned: Iterable[PlannedFit], settings_hash: str
) -> dict[str, StoredFit]:
    """The stored fit of every planned model that is current, with its draws.

    A record left over from an earlier run with other data is ignored, so a fit whose refit
    was lost (a killed pod) counts as missing rather than silently reusing stale draws; so is
    a record written by a run whose lease of the wave was taken over.
    """
    fits: dict[str, StoredFit] = {}
    taken_over = taken_over_runs(store, wave)
    for model in planned:
        record, _ = _current_record(store, wave, model, settings_hash, taken_over)
        if record is not None:
            fits[model.key] = read_fit(store, wave, record)
    return fits
