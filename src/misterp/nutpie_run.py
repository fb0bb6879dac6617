"""nutpie's background sampler as a :class:`~misterp.fitting.RunningSampler`.

``nutpie.sample(..., blocking=False)`` keeps drawing in Rust threads while Python looks at
the trace (``inspect``) and can stop it (``cancel``); its ``progress_callback`` reports each
chain's finished draws, so a look waits for the slowest chain without polling the trace.
Shared machinery: any family sampling a nutpie-compiled model can hand this to the retry loop.

A look reads the raw trace (``return_raw_trace=True``: Arrow record batches, 10 ms) and turns
only what is judged and kept into a small ``DataTree`` (:func:`posterior_tree`): nutpie's own
conversion builds every variable through ArviZ's ``from_dict`` (0.13-0.24 s a look, measured,
as long as the draws a look can save).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from misterp.fitting import RunningSampler

__all__ = ["PROGRESS_EVERY_MS", "SAMPLE_STATS", "NutpieRun", "posterior_tree"]

#: The sample stats a judge reads (``misterp.diagnostics.check_convergence``).
SAMPLE_STATS = ("diverging", "energy", "n_steps")

#: How often nutpie reports the chains' progress: a look starts at most this late.
PROGRESS_EVERY_MS = 20
#: How long a look waits between checks that the sampler is still running.
_ALIVE_CHECK_SECONDS = 0.25


class NutpieRun(RunningSampler):
    """One nutpie run of ``chains`` chains: ``tune`` warm-up then up to ``draws`` draws each."""

    def __init__(
        self,
        compiled: Any,
        *,
        tune: int,
        draws: int,
        chains: int,
        keep: Callable[[str], bool] = lambda name: True,
        **options: Any,
    ):
        import nutpie

        self._compiled = compiled
        self._keep = keep
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
            return_raw_trace=True,
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
            while not self._progress.wait_for(
                lambda: self._after_warmup >= draws, timeout=_ALIVE_CHECK_SECONDS
            ):
                if self._finished():
                    # a finished run has every draw, unless a chain failed: finish() raises
                    return self._after_warmup >= draws
        return True

    def first(self, draws: int) -> Any:
        """Every chain's first ``draws`` draws after warm-up (faster chains are cut)."""
        return posterior_tree(self._sampler.inspect(), self._compiled, self._keep, draws)

    def finish(self) -> Any:
        """Every draw, once the chains are done; raises the sampler's error if one failed."""
        return posterior_tree(self._sampler.wait(), self._compiled, self._keep, self._draws)

    def stop(self) -> None:
        """Cancel the chains if they still run (nothing to do once finished)."""
        if self._stopped:
            return
        self._stopped = True
        if not self._finished():
            self._sampler.cancel()


def posterior_tree(raw: Any, compiled: Any, keep: Callable[[str], bool], draws: int) -> Any:
    """The ``posterior`` and ``sample_stats`` of every chain's first ``draws`` draws after warm-up.

    ``raw``: nutpie's raw trace (one Arrow record batch of draws and one of stats per chain,
    warm-up rows first, marked by the ``tuning`` stat). The posterior holds the variables of
    nutpie's own conversion (not the unconstrained values it reparameterised) for which
    ``keep(name)`` holds, each with the dims nutpie recorded; the stats are
    :data:`SAMPLE_STATS`. The numbers are nutpie's, unconverted.
    """
    import pyarrow
    import xarray as xr

    draw_batches, stat_batches = raw.get_arrow_trace()
    skipped = set(getattr(compiled, "reparameterized_names", ()) or ())
    posterior: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    stats: dict[str, tuple[list[str], list[np.ndarray]]] = {}
    for draw_batch, stat_batch in zip(draw_batches, stat_batches, strict=True):
        warmup = int(np.asarray(pyarrow.array(stat_batch.column("tuning"))).sum())
        rows = slice(warmup, warmup + draws)
        for name in draw_batch.column_names:
            if name not in skipped and keep(name):
                _append(posterior, name, draw_batch.column(name), rows)
        for name in SAMPLE_STATS:
            if name in stat_batch.column_names:
                _append(stats, name, stat_batch.column(name), rows)
    groups = {}
    for group, columns in (("posterior", posterior), ("sample_stats", stats)):
        groups[group] = xr.Dataset(
            {
                name: (["chain", "draw", *dims], np.stack(chains))
                for name, (dims, chains) in columns.items()
            }
        )
    return xr.DataTree.from_dict(groups)


def _append(
    columns: dict[str, tuple[list[str], list[np.ndarray]]], name: str, column: Any, rows: slice
) -> None:
    """One chain's rows of a column as ``(draws, *shape)``, with its dims from the metadata."""
    import pyarrow

    field = column.field
    metadata = field.metadata or {}
    shape = [int(size) for size in metadata.get(b"shape", b"").decode().split(",") if size]
    dims = [dim for dim in metadata.get(b"dims", b"").decode().split(",") if dim]
    if len(dims) != len(shape):  # nutpie names none: ArviZ's default names
        dims = [f"{name}_dim_{axis}" for axis in range(len(shape))]
    values = pyarrow.array(column)
    if hasattr(values, "flatten"):
        values = values.flatten()
    array = np.asarray(values.to_numpy(zero_copy_only=False))
    array = array.reshape(-1, *shape)[rows]
    columns.setdefault(name, (dims, []))[1].append(array)
