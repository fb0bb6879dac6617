"""The tracker's fits in the shared fit store: what a wave plans per model, and its records.

``misterp.fitstore`` stores and plans fits for every family; these are its tracker-typed uses
(records are ``mrp.records.FitRecord``, a wave's folder is ``OUTPUT/WAVE``) and the record a
model's fit writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from misterp import fitstore
from misterp.fitstore import RefitPlan, fit_path, write_fit_files
from misterp.fitting import FitResult
from misterp.mrp.records import FitRecord
from misterp.storage import ResultStore

__all__ = [
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

#: A model's fit read back: its ``FitRecord`` and kept draws.
StoredFit = fitstore.StoredFit[FitRecord]


@dataclass(frozen=True)
class PlannedFit:
    """What a run plans for one model: enough to tell whether a stored fit is still current."""

    key: str
    spec_hash: str
    data_hash: str

    def expected(self, settings_hash: str) -> dict[str, str]:
        """The hashes a current record carries (``FitRecord.hashes``)."""
        return {"spec": self.spec_hash, "data": self.data_hash, "settings": settings_hash}


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
    """Persist one model's fit: its draws first, then the record that makes it visible."""
    record = FitRecord(
        key=result.key,
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
    write_fit_files(store, wave, result.key, result.draws, record)
    return record


def read_fit_record(store: ResultStore, wave: str, key: str) -> FitRecord | None:
    """A model's stored record, or None if it was never written (``RecordError``: unreadable)."""
    return fitstore.read_fit_record(store, wave, key, FitRecord)


def read_fit(store: ResultStore, wave: str, record: FitRecord) -> StoredFit:
    """A model's stored fit with its draws."""
    return fitstore.read_fit(store, wave, record)


def plan_refits(
    store: ResultStore,
    wave: str,
    planned: Iterable[PlannedFit],
    settings_hash: str,
    *,
    refit_all: bool = False,
) -> RefitPlan:
    """Which models of the wave to fit, and why (``fitstore.plan_refits`` for its models)."""
    return fitstore.plan_refits(store, wave, planned, settings_hash, FitRecord, refit_all=refit_all)


def read_current_fits(
    store: ResultStore, wave: str, planned: Iterable[PlannedFit], settings_hash: str
) -> dict[str, StoredFit]:
    """The current fit of every planned model of the wave, with its draws."""
    return fitstore.read_current_fits(store, wave, planned, settings_hash, FitRecord)
