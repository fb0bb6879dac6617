"""nutpie's background sampler as a :class:`~misterp.fitting.RunningSampler`.

``nutpie.sample(..., blocking=False)`` keeps drawing in Rust threads while Python looks at
the trace (``inspect``) and can stop it (``cancel``); its ``progress_callback`` reports each
chain's finished draws, so a look waits for the slowest chain without polling the trace.
Shared machinery: any family sampling a nutpie-compiled model can hand this to the retry loop.
"""

from __future__ import annotations

import threading
from typing import Any

from misterp.fitting import RunningSampler

__all__ = ["PROGRESS_EVERY_MS", "NutpieRun"]

#: How often nutpie reports the chains' progress: a look starts at most this late.
PROGRESS_EVERY_MS = 20
#: How long a look waits between checks that the sampler is still running.
_ALIVE_CHECK_SECONDS = 0.25


class NutpieRun(RunningSampler):
    """One nutpie run of ``chains`` chains: ``tune`` warm-up then up to ``draws`` draws each."""

    def __init__(self, compiled: Any, *, tune: int, draws: int, chains: int, **options: Any):
        import nutpie

        self._tune = tune
        self._draws = draws
        self._after_warmup = 0
        self._progress = threading.Condition()
        self._stopped = False
        self._sampler = nutpie.sample(
            compiled,
            tune=tune,
            draws=draws,
            chains=chains,
            blocking=False,
            progress_bar=False,
            progress_callback=self._on_progress,
            progress_rate=PROGRESS_EVERY_MS,
            save_warmup=False,
            **options,
        )

    def _on_progress(self, chains: list[Any]) -> None:
        """Progress from nutpie (its own thread): the slowest chain's draws after warm-up."""
        slowest = min(chain.finished_draws for chain in chains) if chains else 0
        with self._progress:
            self._after_warmup = max(0, slowest - self._tune)
            self._progress.notify_all()

    def _finished(self) -> bool:
        try:
            return bool(self._sampler.is_finished)
        except TimeoutError:  # nutpie 0.16 answers "still running" with a TimeoutError
            return False

    def wait_for(self, draws: int) -> bool:
        """Block until the slowest chain has ``draws`` draws; False if the run ended first."""
        with self._progress:
            while self._after_warmup < draws:
                if self._progress.wait_for(
                    lambda: self._after_warmup >= draws, timeout=_ALIVE_CHECK_SECONDS
                ):
                    break
                if self._finished():
                    # a finished run has every draw, unless a chain failed: finish() raises
                    return self._after_warmup >= draws
        return True

    def first(self, draws: int) -> Any:
        """Every chain's first ``draws`` draws after warm-up (faster chains are cut)."""
        trace = self._sampler.inspect()
        return trace.isel(draw=slice(0, draws))

    def finish(self) -> Any:
        """Every draw, once the chains are done; raises the sampler's error if one failed."""
        return self._sampler.wait()

    def stop(self) -> None:
        """Cancel the chains if they still run (nothing to do once finished)."""
        if self._stopped:
            return
        self._stopped = True
        if not self._finished():
            self._sampler.cancel()
