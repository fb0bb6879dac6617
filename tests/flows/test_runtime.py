"""Processes a run starts die with it: after ``kill -9`` of the run, no worker or server is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Seconds a child may take to go after its parent was killed: the kernel signals it at once;
#: the slack is for a loaded CI machine.
GONE_WITHIN = 10.0

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only"
)


@pytest.fixture
def parents() -> Iterator[list[subprocess.Popen[str]]]:
    """Parent processes started by a test, with their children killed after it, pass or fail."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for parent in started:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(parent.pid).children(recursive=True):
                child.kill()
        parent.kill()
        parent.wait(timeout=10)


def _start_parent(
    tmp_path: Path, body: str, parents: list[subprocess.Popen[str]]
) -> tuple[subprocess.Popen[str], list[int]]:
    """Run ``body`` in a parent process; it prints the pids of its children on one line."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(body))
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PREFECT_API_URL", "PREFECT_PROFILE"}
    }
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(ROOT),
    }
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    parents.append(parent)
    assert parent.stdout is not None
    line = parent.stdout.readline()  # blocks until the children are up
    assert line.strip(), f"parent exited with {parent.wait()} before starting its children"
    return parent, [int(pid) for pid in line.split()]


def _seconds_until_gone(pids: list[int], limit: float) -> float:
    """Seconds until none of ``pids`` runs (a zombie waiting for its reaper counts as gone)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return time.monotonic() - started
        time.sleep(0.05)
    for pid in pids:  # do not leave them behind either
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"processes {pids} still run {limit:.0f} s after their parent died")


@linux_only
def test_a_fit_worker_dies_within_seconds_of_its_killed_parent(
    tmp_path: Path, parents: list[subprocess.Popen[str]]
) -> None:
    parent, workers = _start_parent(
        tmp_path,
        """
        import multiprocessing, os, time
        from concurrent.futures import ProcessPoolExecutor
        import psutil
        from flows.runtime import init_fit_worker

        def workers():
            children = psutil.Process().children()
            return [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]

        if __name__ == "__main__":  # spawned workers import this module too
            pool = ProcessPoolExecutor(
                max_workers=2,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_fit_worker,
                initargs=(os.getpid(),),
            )
            busy = [pool.submit(time.sleep, 600) for _ in range(2)]
            while len(workers()) < 2:
                time.sleep(0.05)
            time.sleep(2)  # let the workers pass their initializer and start sleeping
            print(*workers(), flush=True)
            time.sleep(600)
        """,
        parents,
    )
    assert len(workers) == 2

    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    seconds = _seconds_until_gone(workers, GONE_WITHIN)

    print(f"fit workers gone {seconds:.2f} s after kill -9 of their parent")


@linux_only
def test_media_mix_fit_workers_of_the_inline_pool_die_with_their_killed_run(
    tmp_path: Path, parents: list[subprocess.Popen[str]]
) -> None:
    """``run_mmm(workers=2)`` (no Prefect): its fit processes must not outlive a ``kill -9``.

    They did: reparented to PID 1 they went on sampling and wrote ``fits/M.json`` after the
    run was gone, also while a ``--force`` re-run held the run's lease.
    """
    from misterp.mmm.simulate import simulate_mmm

    simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80).write(tmp_path / "input")
    parent, workers = _start_parent(
        tmp_path,
        f"""
        import os, pathlib, threading, time
        from misterp.mmm.config import MMMConfig
        from misterp.pipeline.mmm import run_mmm

        MARKS = pathlib.Path({str(tmp_path / "started")!r})

        def sleeping_functions(market, config):
            \"\"\"A fit that marks its process as fitting, then samples for ten minutes.\"\"\"

            def sample(settings):
                (MARKS / str(os.getpid())).touch()
                time.sleep(600)

            return sample, None, None

        def report_fitting_workers():
            while len(list(MARKS.iterdir())) < 2:
                time.sleep(0.05)
            print(*(mark.name for mark in MARKS.iterdir()), flush=True)

        if __name__ == "__main__":  # spawned workers import this module too
            MARKS.mkdir()
            threading.Thread(target=report_fitting_workers, daemon=True).start()
            config = MMMConfig(
                input={str(tmp_path / "input")!r},
                output={str(tmp_path / "out")!r},
                controls=["price"],
                run="r1",
            )
            run_mmm(config, workers=2, functions=sleeping_functions)
        """,
        parents,
    )
    assert len(workers) == 2
    assert parent.pid not in workers

    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    seconds = _seconds_until_gone(workers, GONE_WITHIN)

    print(f"media-mix fit workers gone {seconds:.2f} s after kill -9 of their run")


@linux_only
def test_the_temporary_prefect_server_dies_with_its_killed_parent(
    tmp_path: Path, parents: list[subprocess.Popen[str]]
) -> None:
    parent, children = _start_parent(
        tmp_path,
        """
        import threading, time
        import psutil
        from prefect.events import emit_event
        from flows.runtime import local_prefect_api

        def emit() -> None:
            emit_event(event="misterp.test", resource={"prefect.resource.id": "misterp.test"})

        with local_prefect_api(startup_timeout=240) as url:
            assert url.startswith("http://127.0.0.1:"), url
            # An event from a new thread (as the process pool's message forwarder sends its
            # workers' events) goes to this server too instead of starting Prefect's own.
            sender = threading.Thread(target=emit)
            sender.start()
            sender.join()
            time.sleep(1)
            print(*(c.pid for c in psutil.Process().children()), flush=True)
            time.sleep(600)
        """,
        parents,
    )
    (server,) = children  # Prefect started no server of its own
    assert "uvicorn" in psutil.Process(server).cmdline()

    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    seconds = _seconds_until_gone([server], GONE_WITHIN)

    print(f"temporary Prefect server gone {seconds:.2f} s after kill -9 of its parent")


@linux_only
def test_a_child_whose_parent_already_died_kills_itself() -> None:
    # the race die_with_parent closes: the parent died before the child asked to follow it
    code = "import sys; from flows.runtime import die_with_parent; die_with_parent(1)"
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False, timeout=60)

    assert child.returncode == -signal.SIGKILL


def test_a_startup_timeout_set_after_prefect_is_imported_still_applies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CLI sets its longer default once Prefect is imported; Prefect's snapshot missed it.

    Prefect reads its settings when it is imported, so ``misterp run`` waited 20 s, not the
    180 s its callback sets, for a temporary server on a busy machine, and failed.
    """
    import prefect.settings

    from flows.runtime import ephemeral_startup_timeout

    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "137")
    assert prefect.settings.get_current_settings().server.ephemeral.startup_timeout_seconds != 137
    assert ephemeral_startup_timeout() == 137


def test_a_fit_worker_logs_a_store_outage_without_its_traceback_and_keeps_a_bugs() -> None:
    """Issue 26 probe: the command printed a traceback per fit for an S3 outage; the CLI
    hides it in its own process, but the fits log from worker processes."""
    import logging

    from flows.runtime import quiet_worker_logs
    from misterp.storage import StoreUnavailable

    logger = logging.getLogger("prefect.task_runs")
    before = logger.filters[:]
    try:
        quiet_worker_logs()

        def record(exc: BaseException) -> logging.LogRecord:
            made = logger.makeRecord(
                logger.name, logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, None)
            )
            assert logger.filter(made)
            return made

        outage = StoreUnavailable("s3://b/out", "reading", ConnectionError("refused"))
        assert record(outage).exc_info is None
        assert record(RuntimeError("a bug")).exc_info is not None
    finally:
        logger.filters[:] = before
