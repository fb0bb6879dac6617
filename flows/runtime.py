"""The processes of a run: fit workers and the temporary Prefect API, and how they end.

After ``kill -9`` of ``misterp run`` nothing it started may keep running: its pool workers
(~630 MB each) went on fitting and writing fit records for minutes, and Prefect's temporary
server (~270 MB) stayed up. A kill cannot be caught, so the children ask the kernel to kill
them when their parent goes (Linux ``PR_SET_PDEATHSIG``, :func:`misterp.processes.
die_with_parent`, which the core's own process pools use too); elsewhere that is a no-op.

``python -m flows.runtime PARENT_PID PROGRAM ARGS...`` runs ``PROGRAM`` tied to ``PARENT_PID``
the same way; ``local_prefect_api`` starts the temporary server through it. This module
imports Prefect only inside functions: a fit worker's start-up imports it before any fit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import cast

from misterp.processes import die_with_parent

__all__ = [
    "SINGLE_THREAD_ENV",
    "die_with_parent",
    "ephemeral_startup_timeout",
    "init_fit_worker",
    "limit_threads",
    "local_prefect_api",
    "quiet_worker_logs",
]

logger = logging.getLogger(__name__)

#: Thread pools inside one fit process would fight the other processes for the same cores.
SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def limit_threads() -> None:
    """One BLAS/numba thread per fit process."""
    os.environ.update(SINGLE_THREAD_ENV)


def quiet_worker_logs() -> None:
    """A fit worker logs as the command does: no traceback of an outage.

    The fits log from the worker processes, where the command's own filters
    (``flows.outcome.hide_expected_tracebacks``) are not installed: a store outage would print
    a traceback per fit and retry above the command's one line.
    """
    from flows.outcome import hide_expected_tracebacks

    hide_expected_tracebacks()


def init_fit_worker(parent_pid: int | None = None) -> None:
    """Process-pool initializer of a fit worker: one thread, dies with the run's process."""
    limit_threads()
    die_with_parent(parent_pid)
    quiet_worker_logs()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False


def _start_server(timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    """Prefect's temporary-server command (``SubprocessASGIServer``), tied to this process."""
    import prefect
    from prefect.settings import get_current_settings

    env = {
        **os.environ,
        # what Prefect sets for its own temporary server: no UI, no background services
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
        **get_current_settings().to_environment_variables(exclude_unset=True),
    }
    env.pop("PREFECT_API_URL", None)
    for _ in range(3):  # another process may take the free port before uvicorn binds it
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flows.runtime",
                str(os.getpid()),
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(prefect.__module_path__.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
        )
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _healthy(url):
                return process, url
            time.sleep(0.2)
        if process.poll() is None:
            _stop(process)
            raise RuntimeError(
                f"the temporary Prefect server did not answer within {timeout:.0f} s; raise "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or point PREFECT_API_URL "
                "at a running server"
            )
    raise RuntimeError(
        f"the temporary Prefect server exited with code {process.returncode} at start; point "
        "PREFECT_API_URL at a running server (prefect server start)"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _drain_to_api() -> None:
    """Send the logs and events still queued while the API is up (as Prefect's harness does)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # a worker that never started; nothing to send
            logger.debug("draining %s failed", worker.__name__, exc_info=True)


def _global_settings() -> contextlib.AbstractContextManager[None]:
    """Make the current settings those of threads too (Prefect's log and event workers).

    A new thread sees Prefect's process-global settings, read at import, not the context's:
    without this, the first event starts Prefect's own untied temporary server. Prefect's test
    harness does the same with this internal helper (Prefect 3.8); without it, a no-op.
    """
    import prefect.context

    replace = getattr(prefect.context, "_temporary_global_settings_context", None)
    if replace is None:
        return contextlib.nullcontext()
    return cast(
        contextlib.AbstractContextManager[None], replace(prefect.context.get_settings_context())
    )


def ephemeral_startup_timeout() -> float:
    """Seconds to wait for a temporary Prefect server, as the environment says now.

    Prefect snapshots its settings when it is imported, so a value set afterwards (the CLI
    sets a longer default once Prefect is loaded) would be missed; this reads them afresh.
    """
    from prefect.settings import Settings

    return float(Settings().server.ephemeral.startup_timeout_seconds)


@contextlib.contextmanager
def local_prefect_api(startup_timeout: float | None = None) -> Iterator[str]:
    """Use ``PREFECT_API_URL``, or, without one, a temporary local server that dies with us.

    Prefect starts its own temporary server when no API is configured, but that server
    outlives a killed parent. This one is started the same way, tied to this process with
    ``die_with_parent``, and shared with everything this run starts (``PREFECT_API_URL``
    is set in the environment and the settings while the block runs). Yields the API URL.

    Parameters
    ----------
    startup_timeout
        Seconds to wait for the server; default Prefect's
        ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``.
    """
    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    configured = PREFECT_API_URL.value()
    settings = get_current_settings()
    if configured or not settings.server.ephemeral.enabled:
        yield configured or ""  # a real server, or none allowed (Prefect says so itself)
        return
    timeout = startup_timeout or ephemeral_startup_timeout()
    process, url = _start_server(timeout)
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # for the processes this run starts
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}), _global_settings():
            try:
                yield url
            finally:
                _drain_to_api()
    finally:
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        _stop(process)


def _exec_tied(argv: list[str]) -> None:
    """``PARENT_PID PROGRAM ARGS...``: tie this process to PARENT_PID, then become PROGRAM.

    The death signal survives ``exec``, and setting it here rather than in ``preexec_fn``
    avoids running Python between ``fork`` and ``exec`` of a threaded parent.
    """
    parent_pid, program, *_ = argv
    die_with_parent(int(parent_pid))
    os.execv(program, argv[1:])  # noqa: S606


if __name__ == "__main__":
    _exec_tied(sys.argv[1:])
