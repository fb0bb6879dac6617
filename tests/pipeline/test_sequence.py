"""The pipeline's one sequence, with a family run that records what it is asked to do."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from misterp.pipeline.sequence import run_pipeline


@dataclass
class FakeLease:
    run_id: str


@dataclass
class RecordingRun:
    """A family run whose steps append to one log; ``held`` says when the lease was held."""

    units_to_fit: list[str]
    log: list[str] = field(default_factory=list)
    held: bool = False
    fail_at: str | None = None

    def _step(self, name: str) -> None:
        self.log.append(f"{name}{' (leased)' if self.held else ''}")
        if name == self.fail_at:
            raise RuntimeError(f"{name} broke")

    @contextmanager
    def lease(self, *, force: bool, note: str | None) -> Iterator[FakeLease]:
        self.log.append(f"lease force={force} note={note}")
        self.held = True
        try:
            yield FakeLease("run-1")
        finally:
            self.held = False
            self.log.append("released")

    def stage(self) -> list[str]:
        self._step("stage")
        return self.units_to_fit

    def units(self, plan: list[str]) -> list[str]:
        return plan

    def publish(self, run_id: str) -> str:
        self._step(f"publish {run_id}")
        return "published"

    def track(self, published: str) -> str:
        self._step(f"track {published}")
        return "tracked"

    def report(self, published: str) -> str:
        self._step(f"report {published}")
        return "reported"


FanOutFunction = Callable[[RecordingRun, Sequence[str], str], None]


def _validated(run: RecordingRun) -> Callable[[], RecordingRun]:
    def validate() -> RecordingRun:
        run.log.append(f"validate{' (leased)' if run.held else ''}")
        return run

    return validate


def _fan_out(calls: list[tuple[list[str], str]]) -> FanOutFunction:
    def fan_out(run: RecordingRun, units: Sequence[str], run_id: str) -> None:
        run.log.append(f"fit {','.join(units)}{' (leased)' if run.held else ''}")
        calls.append((list(units), run_id))

    return fan_out


def test_every_step_runs_once_in_order_and_all_but_validation_under_the_lease() -> None:
    run = RecordingRun(["a", "b"])
    calls: list[tuple[list[str], str]] = []
    outcome = run_pipeline(_validated(run), fan_out=_fan_out(calls), force=True, note="flow run x")
    assert run.log == [
        "validate",  # before the lease: invalid input takes no lease and writes nothing
        "lease force=True note=flow run x",
        "stage (leased)",
        "fit a,b (leased)",
        "publish run-1 (leased)",
        "track published (leased)",
        "report published (leased)",
        "released",
    ]
    assert calls == [(["a", "b"], "run-1")]  # the fits carry the lease holder's run id
    assert (outcome.plan, outcome.published, outcome.tracking, outcome.report) == (
        ["a", "b"],
        "published",
        "tracked",
        "reported",
    )


def test_nothing_is_fanned_out_when_every_fit_is_reused() -> None:
    run = RecordingRun([])
    calls: list[tuple[list[str], str]] = []
    run_pipeline(lambda: run, fan_out=_fan_out(calls))
    assert calls == []
    assert "publish run-1 (leased)" in run.log


def test_a_failing_step_releases_the_lease_and_runs_nothing_after_it() -> None:
    run = RecordingRun(["a"], fail_at="publish run-1")
    with pytest.raises(RuntimeError, match="publish run-1 broke"):
        run_pipeline(lambda: run, fan_out=_fan_out([]))
    assert run.log[-2:] == ["publish run-1 (leased)", "released"]
    assert not any(entry.startswith(("track", "report")) for entry in run.log)


def test_each_step_goes_through_the_runner_by_name() -> None:
    run = RecordingRun(["a"])
    seen: list[str] = []

    def runner(name: str, step: Callable[..., Any], /, *args: Any) -> Any:
        seen.append(name)
        return step(*args)

    run_pipeline(lambda: run, fan_out=_fan_out([]), steps=runner)
    assert seen == ["validate", "stage", "publish", "track", "report"]
