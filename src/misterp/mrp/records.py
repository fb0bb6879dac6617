"""The tracker's stored records: a model's fit record, the wave's manifest, a run's summary.

They extend the family-neutral records of ``misterp.records``; what they add names a model
(its spec and the respondents it was fitted on) and a published wave.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from misterp.mrp.census import CensusReport
from misterp.records import (
    Attempt,
    FitRecordBase,
    ManifestBase,
    Record,
    RecordError,
    StatusCounts,
)
from misterp.status import FitStatus

__all__ = [
    "CENSUS_HASH_PREFIX",
    "FitRecord",
    "Manifest",
    "ManifestModel",
    "WaveRunSummary",
    "check_estimates",
]


class FitRecord(FitRecordBase):
    """The stored outcome of one model's fit: ``OUTPUT/WAVE/fits/KEY.json``.

    It names the spec, data and settings it was fitted from (as hashes), so a re-run can tell
    whether it is still current, and the run that wrote it.
    """

    kind: ClassVar[str] = "fit record"
    key: str
    spec: dict[str, Any]
    spec_hash: str
    n_respondents: int

    @property
    def fit_key(self) -> str:
        """The model key."""
        return self.key

    def hashes(self) -> dict[str, str]:
        """Spec, data and settings hashes: a changed spec is reported first."""
        return {"spec": self.spec_hash, **super().hashes()}

    def staleness(self, spec_hash: str, data_hash: str, settings_hash: str) -> str | None:
        """Why this record no longer describes the planned model, or None if it still does.

        The one rule for "is this fit current?": the same spec, the same data, the same fit
        settings. Re-runs reuse only current records.
        """
        return self.staleness_against(
            {"spec": spec_hash, "data": data_hash, "settings": settings_hash}
        )

    def is_current(self, spec_hash: str, data_hash: str, settings_hash: str) -> bool:
        """True when the record was fitted from this spec, data and settings."""
        return self.staleness(spec_hash, data_hash, settings_hash) is None


#: ``Manifest.input_hashes`` key prefix of one market's census (poststratification) rows.
CENSUS_HASH_PREFIX = "poststrat:"


class ManifestModel(Record):
    """One planned model in the manifest: its own status, its estimates' status, its history."""

    key: str
    spec: dict[str, Any]
    spec_hash: str
    data_hash: str
    status: FitStatus
    #: The status on the estimate rows: the worse of the model's own and its base's.
    estimate_status: FitStatus
    attempts: tuple[Attempt, ...]
    seconds: float | None
    fit_id: str | None
    n_respondents: int
    draws: str | None


class Manifest(ManifestBase):
    """``OUTPUT/WAVE/manifest.json``: written last, so its presence means the wave is complete."""

    kind: ClassVar[str] = "manifest"
    wave: str
    complete: bool = True
    input: str | None
    #: sha256 of ``estimates.parquet`` as published with this manifest.
    estimates_sha256: str
    models: tuple[ManifestModel, ...]
    #: How the census was built from margins (``census.parquet``); None for a given joint.
    census: CensusReport | None = None

    def describes_estimates(self, estimates: bytes) -> bool:
        """True when ``estimates`` are the bytes of the ``estimates.parquet`` published with it.

        Two runs publishing one wave could leave one's manifest beside the other's estimates;
        a reader checks this before trusting either.
        """
        return hashlib.sha256(estimates).hexdigest() == self.estimates_sha256


def check_estimates(manifest: Manifest, estimates: bytes, source: str) -> None:
    """Raise ``RecordError`` naming ``source`` unless the estimates belong to the manifest.

    >>> sha = hashlib.sha256(b"x").hexdigest()
    >>> manifest = Manifest.model_construct(wave="2026-10", estimates_sha256=sha)
    >>> check_estimates(manifest, b"x", "estimates.parquet")
    >>> check_estimates(manifest, b"y", "estimates.parquet")
    Traceback (most recent call last):
    ...
    misterp.records.RecordError: estimates.parquet does not belong to the manifest of wave ...
    """
    if not manifest.describes_estimates(estimates):
        raise RecordError(
            f"{source} does not belong to the manifest of wave {manifest.wave} "
            f"(its sha256 is {hashlib.sha256(estimates).hexdigest()[:12]}..., the manifest "
            f"published {manifest.estimates_sha256[:12]}...): another run wrote one of them; "
            "publish the wave again (misterp rerun) before reading it"
        )


class WaveRunSummary(Record):
    """What a wave run returns (and a CLI prints): where it went and how it ended."""

    wave: str
    output: str
    counts: StatusCounts
    fitted: int
    reused: int
    headline: str
