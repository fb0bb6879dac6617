"""Typed, versioned records every family stores: attempts, convergence, a fit record's base.

Every record a run writes is read again by another process, pod or a later misterp, so each is
a frozen pydantic model with a ``schema_version``. A record from an older or newer misterp is
read when its version is known and refused with a clear message otherwise, never misread.
NaN (a statistic that could not be computed) is stored as JSON ``null`` and read back as NaN,
in one place: the ``MaybeFloat`` type.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationError

from misterp.config import ConvergencePolicy, ConvergenceThresholds, SamplerConfig
from misterp.status import FitStatus

__all__ = [
    "SCHEMA_VERSION",
    "Attempt",
    "ConvergenceReport",
    "FitRecordBase",
    "FitSummary",
    "ManifestBase",
    "Record",
    "RecordError",
    "StatusCounts",
    "VersionedRecord",
    "utc_now",
]

#: Version of every record layout written by this misterp. Bump it when a field changes
#: meaning or a required field is added, and teach ``VersionedRecord.upgrade`` the old one.
SCHEMA_VERSION = 1


def _nan_if_none(value: Any) -> Any:
    return math.nan if value is None else value


def _none_if_nan(value: float) -> float | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


#: A statistic that may be unknown: NaN in memory, ``null`` in JSON.
MaybeFloat = Annotated[
    float, BeforeValidator(_nan_if_none), PlainSerializer(_none_if_nan, return_type=float | None)
]


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class RecordError(ValueError):
    """A stored record that this misterp cannot read (another schema version, or corrupt)."""


class Record(BaseModel):
    """A frozen record that rejects unknown fields: what is stored is exactly what is read."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class VersionedRecord(Record):
    """A record with a schema version, read through ``from_json`` which checks it first."""

    #: What the record is, for error messages ("fit record", "manifest").
    kind: ClassVar[str] = "record"
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def upgrade(cls, payload: dict[str, Any], version: int) -> dict[str, Any]:
        """Turn an older layout into the current one; refuse what cannot be read."""
        raise RecordError(f"schema version {version} is no longer readable")

    @classmethod
    def from_json(cls, data: bytes | str, source: str) -> Self:
        """Parse a stored record, checking its schema version before its fields.

        Raises ``RecordError`` naming ``source`` and what to do when the record comes from
        another misterp version or is not a valid record.
        """
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{source}: not valid JSON ({exc}); delete it and re-run") from exc
        if not isinstance(payload, dict):
            raise RecordError(f"{source}: expected a JSON object for a {cls.kind}")
        version = payload.get("schema_version", 0)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise RecordError(
                f"{source}: {cls.kind} has schema version {version}, newer than this misterp "
                f"reads ({SCHEMA_VERSION}); upgrade misterp to read it"
            )
        if version < SCHEMA_VERSION:
            try:
                payload = cls.upgrade(payload, version)
            except RecordError as exc:
                raise RecordError(
                    f"{source}: {cls.kind} was written by an older misterp ({exc}); "
                    "run the wave again to rewrite it"
                ) from exc
        try:
            return cls.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                for error in exc.errors()[:5]
            )
            raise RecordError(f"{source}: not a valid {cls.kind}: {problems}") from exc

    def to_json(self) -> bytes:
        """The record as stored: JSON with sorted keys, NaN as null."""
        payload = self.model_dump(mode="json")
        return json.dumps(payload, indent=2, sort_keys=True).encode()


class ConvergenceReport(Record):
    """Diagnostics of one sampling attempt.

    ``r_hat_max`` is the worst split R-hat over the monitored parameters and the published
    estimands, ``ess_*_min`` the smallest effective sample sizes over the parameters,
    ``estimand_ess_*_min`` over the estimands (a tracker's poststratified shares; NaN when the
    family handed none); the ``*_worst`` fields name the quantity behind each. ``bfmi_min``
    flags poor energy exploration. Unknown values are NaN, and unknown never passes.
    """

    r_hat_max: MaybeFloat
    ess_bulk_min: MaybeFloat
    ess_tail_min: MaybeFloat
    divergences: int
    bfmi_min: MaybeFloat
    chains: int
    #: Draws per chain the attempt was judged on (fewer than the cap when it stopped early).
    draws: int
    seconds: MaybeFloat = math.nan
    #: Mean leapfrog steps per kept draw: what a draw costs, whatever the machine's load
    #: (the geometry's price; NaN when the sampler does not report it, and in older records).
    steps_per_draw: MaybeFloat = math.nan
    #: How many published estimands were judged (0 in records older than issue 23).
    estimands: int = 0
    estimand_ess_bulk_min: MaybeFloat = math.nan
    estimand_ess_tail_min: MaybeFloat = math.nan
    r_hat_worst: str | None = None
    ess_bulk_worst: str | None = None
    estimand_ess_worst: str | None = None

    def _criteria(
        self, thresholds: ConvergenceThresholds
    ) -> list[tuple[str, float, float, str | None]]:
        """(statistic, value, threshold, quantity) per ESS criterion of the policy."""
        if thresholds.policy is ConvergencePolicy.ALL_PARAMETERS:
            return [
                ("bulk ESS", self.ess_bulk_min, thresholds.ess_bulk_min, self.ess_bulk_worst),
                ("tail ESS", self.ess_tail_min, thresholds.ess_tail_min, self.ess_bulk_worst),
            ]
        worst = self.estimand_ess_worst or "no estimand"
        return [
            ("estimand bulk ESS", self.estimand_ess_bulk_min, thresholds.ess_bulk_min, worst),
            ("estimand tail ESS", self.estimand_ess_tail_min, thresholds.ess_tail_min, worst),
            (
                "parameter bulk ESS",
                self.ess_bulk_min,
                thresholds.parameter_ess_bulk_min,
                self.ess_bulk_worst,
            ),
        ]

    def failures(self, thresholds: ConvergenceThresholds) -> list[str]:
        """Human-readable reasons this attempt misses the thresholds (empty when it passes)."""
        reasons = []
        if not self.r_hat_max <= thresholds.r_hat_max:  # NaN fails
            reasons.append(
                f"r_hat {self.r_hat_max:.3f} > {thresholds.r_hat_max}{_of(self.r_hat_worst)}"
            )
        if thresholds.policy is ConvergencePolicy.ESTIMANDS and self.estimands == 0:
            reasons.append("no published estimand to judge (convergence.policy: estimands)")
        else:
            for statistic, value, threshold, worst in self._criteria(thresholds):
                if not value >= threshold:
                    reasons.append(f"{statistic} {value:.0f} < {threshold:.0f}{_of(worst)}")
        if self.divergences < 0:
            reasons.append("divergences unknown (no sample stats)")
        elif self.divergences > thresholds.divergences_max:
            reasons.append(f"{self.divergences} divergences > {thresholds.divergences_max}")
        return reasons

    def passes(self, thresholds: ConvergenceThresholds) -> bool:
        """True when every threshold is met."""
        return not self.failures(thresholds)

    def short_of_draws(self, thresholds: ConvergenceThresholds) -> bool:
        """True when R-hat or an ESS misses: chains that are sound but too short."""
        return not self.r_hat_max <= thresholds.r_hat_max or any(
            not value >= threshold for _, value, threshold, _ in self._criteria(thresholds)
        )

    def limited_by(self, thresholds: ConvergenceThresholds) -> str:
        """The criterion closest to (or furthest past) its threshold, and its quantity.

        What decided how long the fit ran: R-hat's distance from 1 relative to the allowed
        one, an ESS's threshold relative to its value; ``"divergences"`` when there were any.

        >>> report = ConvergenceReport(
        ...     r_hat_max=1.004, ess_bulk_min=900, ess_tail_min=800, divergences=0,
        ...     bfmi_min=1.0, chains=4, draws=500, estimands=2, estimand_ess_bulk_min=1500,
        ...     estimand_ess_tail_min=420, r_hat_worst="1|age_sigma",
        ...     estimand_ess_worst="share all")
        >>> report.limited_by(ConvergenceThresholds())
        'estimand tail ESS of share all'
        """
        if self.divergences != 0 and self.divergences > thresholds.divergences_max:
            return "divergences"
        use = {
            f"R-hat{_of(self.r_hat_worst, ' of')}": (self.r_hat_max - 1)
            / (thresholds.r_hat_max - 1)
        }
        for statistic, value, threshold, worst in self._criteria(thresholds):
            use[f"{statistic}{_of(worst, ' of')}"] = threshold / value if value > 0 else math.inf
        known = {name: value for name, value in use.items() if not math.isnan(value)}
        if len(known) < len(use):
            return next(name for name in use if name not in known)
        return max(known, key=lambda name: known[name])


def _of(quantity: str | None, joint: str = "") -> str:
    """`` (quantity)`` or `` of quantity`` after a statistic, or nothing."""
    if quantity is None:
        return ""
    return f"{joint} {quantity}" if joint else f" ({quantity})"


class Attempt(Record):
    """One sampling attempt: the settings used and what came of them."""

    sampler: SamplerConfig
    report: ConvergenceReport | None
    status: FitStatus
    error: str | None = None
    #: Why the attempt missed the thresholds, as a person would say it (empty when it passed).
    failures: tuple[str, ...] = ()
    #: The criterion that decided how long the attempt ran (``ConvergenceReport.limited_by``).
    limited_by: str | None = None


class FitRecordBase(VersionedRecord):
    """What every family's stored fit record says, whatever the model: the family-neutral part.

    A family's record (``misterp.mrp.records.FitRecord``, ``misterp.mmm.outputs.MMMFitRecord``)
    extends it with what names its model and data. The retry loop's resume rule, the fit store,
    health and ``FitSummary`` read only these fields.
    """

    data_hash: str
    settings_hash: str
    status: FitStatus
    attempts: tuple[Attempt, ...]
    seconds: float
    has_draws: bool
    fit_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    #: When the record was written, to the microsecond (compared with lease takeovers).
    fitted_at: str = Field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    #: The run (its lease) that wrote the record; None when written without a lease.
    run_id: str | None = None

    @property
    def fit_key(self) -> str:
        """The fit's key in its run: a model key (MRP) or a market (MMM)."""
        raise NotImplementedError

    def hashes(self) -> dict[str, str]:
        """What the fit was fitted from, by name, in the order a change is reported."""
        return {"data": self.data_hash, "settings": self.settings_hash}

    def staleness_against(self, expected: Mapping[str, str]) -> str | None:
        """Why the record no longer describes the planned fit (``data changed``), or None.

        ``expected`` names the planned fit's hashes as :meth:`hashes` does; the one rule for
        "is this fit current?" in every family.
        """
        for name, value in self.hashes().items():
            if expected.get(name) != value:
                return f"{name} changed"
        return None

    @property
    def last_report(self) -> ConvergenceReport | None:
        """Diagnostics of the last attempt."""
        return self.attempts[-1].report if self.attempts else None

    @property
    def error(self) -> str | None:
        """The error of the last attempt, if it raised."""
        return self.attempts[-1].error if self.attempts else None


class StatusCounts(Record):
    """Models per status, said one way everywhere (run state, health report, CLI).

    ``converged``, ``not_converged`` and ``failed`` count each model's own fit.
    ``flagged_by_base`` counts models that converged themselves but whose estimates are flagged
    because the model of their base question did not converge.
    """

    models: int = 0
    converged: int = 0
    not_converged: int = 0
    failed: int = 0
    flagged_by_base: int = 0

    def of(self, status: FitStatus) -> int:
        """The count of one status."""
        count: int = getattr(self, status.value)
        return count

    @property
    def healthy(self) -> bool:
        """True when every model converged and nothing is flagged."""
        return self.converged == self.models and not self.flagged_by_base

    def sentence(self) -> str:
        """E.g. ``4 not converged, 80 of 84 converged; 5 more flagged because their base ...``."""
        if self.healthy:
            return f"all {self.models} models converged"
        parts = [
            f"{count} {status.value.replace('_', ' ')}"
            for status in (FitStatus.FAILED, FitStatus.NOT_CONVERGED)
            if (count := self.of(status))
        ]
        text = ", ".join([*parts, f"{self.converged} of {self.models} converged"])
        if self.flagged_by_base:
            text += f"; {self.flagged_by_base} more flagged because their base did not converge"
        return text

    @classmethod
    def count(
        cls, own: Mapping[str, FitStatus], published: Mapping[str, FitStatus]
    ) -> StatusCounts:
        """Counts from each model's own status and the status its estimates were published with."""
        values = list(own.values())
        flagged = sum(
            1
            for key, status in own.items()
            if status is FitStatus.CONVERGED and published.get(key, status).needs_attention
        )
        return cls(
            models=len(values),
            converged=values.count(FitStatus.CONVERGED),
            not_converged=values.count(FitStatus.NOT_CONVERGED),
            failed=values.count(FitStatus.FAILED),
            flagged_by_base=flagged,
        )


class ManifestBase(VersionedRecord):
    """What every family's manifest says: written last, so its presence means a run is complete.

    A family's manifest (``mrp.records.Manifest`` of a wave, ``mmm.outputs.MMMManifest``)
    extends it with its models and what its published files hash to.
    """

    created_at: str = Field(default_factory=utc_now)
    input_hashes: dict[str, str]
    versions: dict[str, str]
    #: The run's config as it was fitted, without storage options.
    config: dict[str, Any]
    counts: StatusCounts
    wall_seconds: float | None
    files: dict[str, str]
    healthy: bool
    #: The run (its lease) that published it; None when published without a lease.
    run_id: str | None = None


class FitSummary(Record):
    """What a fit worker reports back to the dispatcher: small, so it travels cheaply.

    The draws stay in the store; the parent reads them from there when it publishes.
    """

    key: str
    status: FitStatus
    attempts: int
    seconds: float
    r_hat_max: float | None = None
    ess_bulk_min: float | None = None
    ess_tail_min: float | None = None
    divergences: int | None = None
    bfmi_min: float | None = None
    error: str | None = None
    failures: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, record: FitRecordBase) -> FitSummary:
        """Summarise a fit record (NaN statistics become None)."""
        report = record.last_report
        stats: dict[str, Any] = {}
        if report is not None:
            stats = {
                name: _none_if_nan(getattr(report, name))
                for name in ("r_hat_max", "ess_bulk_min", "ess_tail_min", "bfmi_min")
            }
            stats["divergences"] = report.divergences
        return cls(
            key=record.fit_key,
            status=record.status,
            attempts=len(record.attempts),
            seconds=record.seconds,
            error=record.error.splitlines()[0] if record.error else None,
            failures=record.attempts[-1].failures if record.attempts else (),
            **stats,
        )
