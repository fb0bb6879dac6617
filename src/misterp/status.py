"""The outcome of a fit, in three words, importable without any statistics library.

Health reports, alerts and batch summaries only need to read a status; they import this and
nothing heavy. The order (converged < not converged < failed) is defined here once.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FitStatus"]


class FitStatus(StrEnum):
    """How a model's fit ended, from best to worst.

    >>> FitStatus.worst(FitStatus.CONVERGED, FitStatus.NOT_CONVERGED)
    <FitStatus.NOT_CONVERGED: 'not_converged'>
    >>> FitStatus("failed").severity
    2
    """

    CONVERGED = "converged"
    NOT_CONVERGED = "not_converged"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """0 for converged, 1 for not converged, 2 for failed."""
        return _ORDER.index(self)

    @property
    def needs_attention(self) -> bool:
        """True unless the fit converged: its estimates must not be read as fine."""
        return self is not FitStatus.CONVERGED

    @classmethod
    def worst(cls, *statuses: FitStatus) -> FitStatus:
        """The most severe of ``statuses`` (a conditional model is as bad as its base)."""
        return max(statuses, key=lambda status: status.severity)


_ORDER: tuple[FitStatus, ...] = (FitStatus.CONVERGED, FitStatus.NOT_CONVERGED, FitStatus.FAILED)
