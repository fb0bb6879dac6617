"""The retry loop every model family shares: sample, judge, escalate, record every attempt.

It knows nothing of formulas, cells or media channels. A family hands it a ``sample`` function
(sampler settings in, an ArviZ ``DataTree`` out) and an ``extract`` function (the posterior
in, the draws worth keeping out); the MRP family passes its Bambi/nutpie binomial model and
the cell probabilities, a media-mix family would pass its pymc-marketing model and its
contributions. Tests inject a sampler the same way instead of patching anything.

A ``sample`` function may instead return a :class:`RunningSampler`, a sampler still drawing:
the loop then judges the chains at every look of ``SamplerConfig.looks`` while they run and
stops them at the first look that passes, so a fit samples until it is precise rather than a
fixed length (issue 23); only a fit that misses at the cap climbs the retry ladder.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import itertools
import logging
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from misterp.config import ConvergenceThresholds, RetryPolicy, SamplerConfig
from misterp.diagnostics import check_convergence, next_attempt
from misterp.records import Attempt, ConvergenceReport, FitRecordBase
from misterp.status import FitStatus

__all__ = [
    "Diagnose",
    "Extract",
    "FitResult",
    "RunningSampler",
    "Sample",
    "fit_with_policy",
    "release_memory",
    "reproducible_compilation",
    "resume_settings",
]

logger = logging.getLogger(__name__)

#: Draw a posterior with these settings; returns an ArviZ ``DataTree`` or ``InferenceData``,
#: or a :class:`RunningSampler` to be judged while it draws.
Sample = Callable[[SamplerConfig], Any]
#: The draws a family keeps of a posterior (e.g. thinned cell probabilities).
Extract = Callable[[Any, SamplerConfig], np.ndarray]
#: Diagnostics of a posterior; the seconds the attempt took are passed in.
Diagnose = Callable[[Any, float], ConvergenceReport]


class RunningSampler(ABC):
    """A sampler still drawing, which can be judged on its first draws and stopped there.

    The chains are the same whether they are stopped at a look or run to the cap: a fit
    stopped after 500 draws holds exactly the first 500 draws of the full run.
    """

    @abstractmethod
    def wait_for(self, draws: int) -> bool:
        """Block until every chain has ``draws`` draws after warm-up; False if it ended first."""

    @abstractmethod
    def first(self, draws: int) -> Any:
        """The posterior of every chain's first ``draws`` draws after warm-up."""

    @abstractmethod
    def finish(self) -> Any:
        """Wait for the cap; the whole posterior (raises what the sampler raised)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop drawing and discard the rest (idempotent)."""


@dataclass
class FitResult:
    """The outcome of fitting one model, successful or not.

    A failed fit is returned, not raised, so the wave can report it next to the successes.
    ``draws`` are what ``extract`` kept of the last attempt that sampled (kept even when it did
    not converge, so the estimate can be published *flagged*); a failed fit has none.
    """

    key: str
    status: FitStatus
    attempts: list[Attempt]
    draws: np.ndarray | None
    seconds: float

    @property
    def report(self) -> ConvergenceReport | None:
        """Diagnostics of the last attempt."""
        return self.attempts[-1].report if self.attempts else None

    @property
    def error(self) -> str | None:
        """The error of the last attempt, if it raised."""
        return self.attempts[-1].error if self.attempts else None


def _diagnose(posterior: Any, seconds: float) -> ConvergenceReport:
    return check_convergence(posterior, seconds=seconds)


def fit_with_policy(
    sample: Sample,
    extract: Extract,
    *,
    key: str,
    sampler: SamplerConfig,
    thresholds: ConvergenceThresholds,
    policy: RetryPolicy,
    diagnose: Diagnose = _diagnose,
) -> FitResult:
    """Fit one model, escalating sampler settings until diagnostics pass or the policy gives up.

    Every attempt is recorded. An attempt that raises ends the fit as failed: an exception is
    not a convergence problem, and stronger settings would not help.
    """
    reproducible_compilation()
    started = time.perf_counter()
    attempts: list[Attempt] = []
    draws: np.ndarray | None = None
    settings: SamplerConfig | None = sampler
    number = 0
    while settings is not None:
        number += 1
        attempt_started = time.perf_counter()
        try:
            posterior, report = _sample_until_precise(
                sample(settings),
                settings,
                functools.partial(_judged, diagnose, attempt_started),
                thresholds,
            )
            draws = extract(posterior, settings)
        except Exception as exc:
            logger.exception("fit %s raised on attempt %d", key, number)
            attempts.append(
                Attempt(
                    sampler=settings,
                    report=None,
                    status=FitStatus.FAILED,
                    error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
                )
            )
            draws = None
            break
        del posterior  # the full trace; only the extracted draws are kept
        failures = tuple(report.failures(thresholds))
        status = FitStatus.NOT_CONVERGED if failures else FitStatus.CONVERGED
        attempts.append(
            Attempt(
                sampler=settings,
                report=report,
                status=status,
                failures=failures,
                limited_by=report.limited_by(thresholds),
            )
        )
        if failures:
            logger.warning("fit %s attempt %d missed: %s", key, number, "; ".join(failures))
        settings = next_attempt(report, settings, policy, thresholds, number)
    final = attempts[-1].status
    release_memory()
    return FitResult(
        key=key,
        status=final,
        attempts=attempts,
        draws=draws if final is not FitStatus.FAILED else None,
        seconds=time.perf_counter() - started,
    )


def _judged(diagnose: Diagnose, started: float, posterior: Any) -> ConvergenceReport:
    """``diagnose`` with the attempt's seconds so far."""
    return diagnose(posterior, time.perf_counter() - started)


def _sample_until_precise(
    sampled: Any,
    settings: SamplerConfig,
    judge: Callable[[Any], ConvergenceReport],
    thresholds: ConvergenceThresholds,
) -> tuple[Any, ConvergenceReport]:
    """The posterior an attempt is judged on, and its report.

    A finished posterior is judged once. A running sampler is judged at each look before the
    cap and stopped at the first that passes, or at one with divergences (they only add up,
    so drawing on cannot pass); otherwise it runs to the cap. The seconds in a report are
    the attempt's until that look.
    """
    if not isinstance(sampled, RunningSampler):
        return sampled, judge(sampled)
    try:
        for look in settings.looks()[:-1]:
            if not sampled.wait_for(look):
                break  # it ended early: finish() raises why
            posterior = sampled.first(look)
            report = judge(posterior)
            hopeless = not 0 <= report.divergences <= thresholds.divergences_max
            if hopeless or report.passes(thresholds):
                return posterior, report
        posterior = sampled.finish()
        return posterior, judge(posterior)
    finally:
        sampled.stop()


def reproducible_compilation() -> None:
    """Compile models without fast-math, so a fit's draws never depend on PyTensor's cache.

    nutpie samples a model PyTensor compiles with numba, by default with fast-math (``reassoc``,
    ``contract``, ...), which lets LLVM reorder floating-point sums differently in a function
    compiled now (its parts inlined and optimised together) than in one loaded from the numba
    cache (``BASE_COMPILEDIR/numba``, shared by every run of the machine). The log density then
    differs in the last bits, the chains part ways, and the first run after a fresh install
    (or after anything else first compiled some of the model's parts) reported other estimates
    than every later run at the same seed: a media-mix ROAS of 218.7 against 217.1, and a
    third value with the cache half warm. Without fast-math both are the same code (measured:
    identical draws cold and warm, and no measurable cost in sampling time).

    Process-wide and idempotent (PyTensor's config is global; each family's fit goes through
    :func:`fit_with_policy`, which calls this first). Models compiled earlier in the process
    with fast-math keep it; the numba cache keys on the flag, so both kinds live side by side.
    """
    import pytensor

    pytensor.config.numba__fastmath = False


def resume_settings(
    record: FitRecordBase | None,
    *,
    expected: Mapping[str, str],
    policy: RetryPolicy,
    thresholds: ConvergenceThresholds,
) -> SamplerConfig | None:
    """Where a refit of a not converged model starts: one rung above its last attempt.

    Refitting it with the first settings and the same seed would only reproduce the same
    miss; a re-run continues the retry ladder instead. None: start from the config. A record
    of other inputs (``expected``: the planned fit's hashes, named as ``record.hashes()``)
    does not count: that is another model.
    """
    if (
        record is None
        or record.status is not FitStatus.NOT_CONVERGED
        or record.staleness_against(expected) is not None
        or not record.attempts
    ):
        return None
    last = record.attempts[-1]
    if last.report is None:
        return None
    one_more = policy.model_copy(update={"max_attempts": 2})
    return next_attempt(last.report, last.sampler, one_more, thresholds, attempt=1)


#: ``release_memory`` collects the whole heap on every this many calls, else only new objects.
FULL_COLLECTION_EVERY = 50
_releases = itertools.count(1)


def release_memory() -> None:
    """Free what a fit left behind and hand the freed heap back to the operating system.

    A fit allocates and frees a few hundred MB of traces; glibc keeps the freed pages, so a
    long-lived worker's RSS crept up ~1.8 MB per fit (measured over 48 fits: 572 -> 657 MB;
    flat at ~485 MB with this), i.e. with the number of models in the wave. The trace is an
    ArviZ ``DataTree`` whose nodes point at each other, so only the cycle collector frees it.
    A full collection walks every object of the process (~500,000 once PyTensor has compiled
    a model): 0.3 s, 13% of a fit. So the objects that survive a collection are frozen
    (``gc.freeze``) and the next collection walks only what was allocated since, the last
    fit's objects; every ``FULL_COLLECTION_EVERY``-th call unfreezes and collects everything,
    so a cycle that was still alive at one call (a running task's objects) and died later is
    freed within that many fits. ``malloc_trim`` is a no-op where the C library has none
    (macOS, musl).
    """
    if next(_releases) % FULL_COLLECTION_EVERY == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)
