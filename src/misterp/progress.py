"""Progress of a batch of fits: done / total, per status, retried, and an honest time left.

Fits run in parallel and the first ones also pay the model compile, so "elapsed / done x left"
is far off early (measured: ~1,077 s predicted for a 118 s run). The estimate here uses the rate
of completions *since the first one* and says nothing until there is a rate to speak of.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from misterp.records import FitSummary
from misterp.status import FitStatus

__all__ = ["FitProgress"]


@dataclass
class FitProgress:
    """Counts fits as they finish and estimates the time left.

    >>> progress = FitProgress(total=4, started=0.0)
    >>> progress.seconds_left(now=10.0) is None  # nothing done yet
    True
    >>> for at in (10.0, 12.0, 14.0):
    ...     progress.done_at(FitSummary(key=f"m{at}", status=FitStatus.CONVERGED, attempts=1,
    ...                                 seconds=2.0), at)
    >>> progress.seconds_left(now=14.0)  # 2 completions in 4 s since the first: 2 s each
    2.0
    """

    total: int
    started: float
    counts: Counter[FitStatus] = field(default_factory=Counter)
    retried: int = 0
    done: int = 0
    first_done_at: float | None = None
    last_done_at: float | None = None

    def done_at(self, summary: FitSummary, now: float) -> None:
        """Record one finished fit."""
        self.done += 1
        self.counts[summary.status] += 1
        self.retried += summary.attempts > 1
        if self.first_done_at is None:
            self.first_done_at = now
        self.last_done_at = now

    def seconds_left(self, now: float) -> float | None:
        """Seconds until the last fit, or None while there is no completion rate yet."""
        if self.done >= self.total:
            return 0.0
        if self.first_done_at is None or self.done < 2 or now <= self.first_done_at:
            return None
        rate = (self.done - 1) / (now - self.first_done_at)
        return (self.total - self.done) / rate

    def line(self, now: float) -> str:
        """E.g. ``fits 40/84: 38 converged, 1 not converged, 1 failed, 6 retried; 61 s ...``."""
        left = self.seconds_left(now)
        eta = "estimating time left" if left is None or math.isnan(left) else f"~{left:.0f} s left"
        return (
            f"fits {self.done}/{self.total}: {self.counts[FitStatus.CONVERGED]} converged, "
            f"{self.counts[FitStatus.NOT_CONVERGED]} not converged, "
            f"{self.counts[FitStatus.FAILED]} failed, {self.retried} retried; "
            f"{now - self.started:.0f} s elapsed, {eta}"
        )
