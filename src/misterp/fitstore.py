"""One record per fit in the result store, for every model family.

A fit writes ``FOLDER/fits/KEY.npy`` (its kept draws) and then ``KEY.json`` (its record, a
``records.FitRecordBase`` of the family's kind) the moment it finishes, so a lost worker or pod
loses only unfinished fits. ``FOLDER`` is the run's folder (a tracker wave, ``mmm/RUN``). A run
or re-run compares the records with what it planned and refits only fits that are missing,
failed, not converged or whose inputs (by hash) changed.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from misterp.lease import taken_over_runs
from misterp.records import ConvergenceReport, FitRecordBase, RecordError
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "FITS",
    "TAKEN_OVER",
    "PlannedUnit",
    "RefitPlan",
    "StoredFit",
    "fit_path",
    "plan_refits",
    "read_current_fits",
    "read_fit",
    "read_fit_record",
    "write_fit_files",
]

logger = logging.getLogger(__name__)

FITS = "fits"


def fit_path(folder: str, key: str, suffix: str) -> str:
    """Where a fit's record (``json``) or draws (``npy``) live, relative to the store root."""
    return f"{folder}/{FITS}/{key}.{suffix}"


class PlannedUnit(Protocol):
    """What a run plans for one fit: its key, and the hashes a current record must carry."""

    @property
    def key(self) -> str:
        """The fit's key in its run."""
        ...

    def expected(self, settings_hash: str) -> dict[str, str]:
        """The hashes by name (as ``FitRecordBase.hashes``) a current record carries."""
        ...


@dataclass(frozen=True)
class StoredFit[RecordT: FitRecordBase]:
    """A fit read back from the store: its record and its kept draws (None if it has none)."""

    record: RecordT
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


def write_fit_files(
    store: ResultStore, folder: str, key: str, draws: np.ndarray | None, record: FitRecordBase
) -> None:
    """Persist one fit: its draws first (or remove stale ones), then the record that shows it."""
    if draws is not None:
        store.write_array(fit_path(folder, key, "npy"), draws)
    else:
        store.remove(fit_path(folder, key, "npy"))
    store.write_bytes(fit_path(folder, key, "json"), record.to_json())


def read_fit_record[RecordT: FitRecordBase](
    store: ResultStore, folder: str, key: str, record_type: type[RecordT]
) -> RecordT | None:
    """The stored record of a fit, or None if it was never written.

    Raises ``RecordError`` when the record exists but cannot be read.
    """
    path = fit_path(folder, key, "json")
    if not store.exists(path):
        return None
    return record_type.from_json(store.read_bytes(path), store.uri(path))


def read_fit[RecordT: FitRecordBase](
    store: ResultStore, folder: str, record: RecordT
) -> StoredFit[RecordT]:
    """A stored fit with its draws."""
    path = fit_path(folder, record.fit_key, "npy")
    draws = store.read_array(path) if record.has_draws else None
    return StoredFit(record, draws)


@dataclass
class RefitPlan:
    """Which fits a run must run, and why; the rest reuse their stored converged fit."""

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


#: Why a record is not reused when its run wrote it after losing the run's lease.
TAKEN_OVER = "written after its run was taken over"


def _current_record[RecordT: FitRecordBase](
    store: ResultStore,
    folder: str,
    planned: PlannedUnit,
    settings_hash: str,
    record_type: type[RecordT],
    taken_over: Mapping[str, dt.datetime] | None = None,
) -> tuple[RecordT | None, str | None]:
    """The stored record if it is current, else None and why not.

    ``taken_over``: runs that lost the lease and when; a record one of them wrote after that
    moment may have been written over a newer run's draws, so it is never current.
    """
    try:
        record = read_fit_record(store, folder, planned.key, record_type)
    except RecordError as exc:
        logger.warning("%s", exc)
        return None, "unreadable record"
    if record is None:
        return None, "missing"
    lost_at = (taken_over or {}).get(record.run_id or "")
    if lost_at is not None and dt.datetime.fromisoformat(record.fitted_at) >= lost_at:
        return None, TAKEN_OVER
    stale = record.staleness_against(planned.expected(settings_hash))
    return (None, stale) if stale else (record, None)


def plan_refits[RecordT: FitRecordBase](
    store: ResultStore,
    folder: str,
    planned: Iterable[PlannedUnit],
    settings_hash: str,
    record_type: type[RecordT],
    *,
    refit_all: bool = False,
) -> RefitPlan:
    """Compare the planned fits with the stored fit records.

    A converged fit is reused only if it is current (the same inputs and fit settings, and
    written by a run that was not taken over); anything else (missing, failed, not converged,
    changed, unreadable) is fitted again.
    """
    plan = RefitPlan(to_fit=[])
    taken_over = {} if refit_all else taken_over_runs(store, folder)
    for model in planned:
        if refit_all:
            reason: str | None = "forced"
        else:
            record, reason = _current_record(
                store, folder, model, settings_hash, record_type, taken_over
            )
            if record is not None and record.status is not FitStatus.CONVERGED:
                reason = record.status.value
        if reason is None:
            plan.reused.append(model.key)
            continue
        plan.to_fit.append(model.key)
        plan.reasons[model.key] = reason
    return plan


def read_current_fits[RecordT: FitRecordBase](
    store: ResultStore,
    folder: str,
    planned: Iterable[PlannedUnit],
    settings_hash: str,
    record_type: type[RecordT],
) -> dict[str, StoredFit[RecordT]]:
    """The stored fit of every planned fit that is current, with its draws.

    A record left over from an earlier run with other data is ignored, so a fit whose refit
    was lost (a killed pod) counts as missing rather than silently reusing stale draws; so is
    a record written by a run whose lease was taken over.
    """
    fits: dict[str, StoredFit[RecordT]] = {}
    taken_over = taken_over_runs(store, folder)
    for model in planned:
        record, _ = _current_record(store, folder, model, settings_hash, record_type, taken_over)
        if record is not None:
            fits[model.key] = read_fit(store, folder, record)
    return fits
