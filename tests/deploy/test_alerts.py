"""Alerts end to end: a planted failure -> Prefect event -> installed automation -> webhook.

A real ``prefect server`` (its triggers and actions services do the work), ``misterp alerts
install`` run as a user runs it, and an HTTP receiver on 127.0.0.1 standing in for Slack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.cli import summary_of
from flows.wave import run_wave
from misterp.mrp import model
from misterp.mrp.records import Manifest
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.storage import MANIFEST, ResultStore
from support import config_file, crashing_for, no_mcmc_backends

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MISTERP = str(Path(sys.executable).with_name("misterp"))
WAVE = "2026-09"
PLANTED = "DE/consider_brand01/yes"


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 recording every JSON body POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


@pytest.fixture
def alerts_removed_after(prefect_client_settings: Any) -> Iterator[None]:
    """Delete the installed automations after the test: the server is the session's, and
    later tests' failed fits would call a webhook that is gone."""
    yield
    from prefect.client.orchestration import get_client

    from flows.alerts import FIT_AUTOMATION, WAVE_AUTOMATION

    with get_client(sync_client=True) as client:
        for name in (FIT_AUTOMATION, WAVE_AUTOMATION):
            for automation in client.read_automations_by_name(name):
                client.delete_automation(automation.id)


def _plant_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler runs out of memory on one model; the others sample nothing (no MCMC).

    The fits run in this process (workers=1), so registering the backends in the public
    ``BACKENDS`` registry that the flow's fits use is enough.
    """
    for name, backend in crashing_for([PLANTED], no_mcmc_backends()).items():
        monkeypatch.setitem(model.BACKENDS, name, backend)  # type: ignore[index]


def _wait_for(received: list[dict[str, Any]], done: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done():
        time.sleep(0.5)


@pytest.mark.usefixtures("alerts_removed_after")
def test_a_failed_fit_and_its_wave_reach_the_installed_webhook(
    prefect_client_settings: Any,
    webhook_receiver: tuple[str, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = webhook_receiver
    installed = subprocess.run(
        [MISTERP, "alerts", "install", "--webhook", url],
        cwd=ROOT,
        env=prefect_client_settings.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    truth = simulate_wave(
        3,
        WaveTruthSpec(
            markets=("DE",), brands=("brand01",), n_respondents=400, rare_brand=None,
            association_options=("innovative",),
        ),
    )  # fmt: skip
    truth.write(str(tmp_path / "input"))
    config = truth.config(str(tmp_path / "input"), str(tmp_path / "results")) | {
        "sampler": {"draws": 150, "tune": 150, "chains": 2, "stored_draws": 100},
        # plumbing thresholds these draws meet, so the planted failure is the only problem
        "convergence": {"r_hat_max": 1.3, "ess_bulk_min": 10, "ess_tail_min": 10},
        "retry": {"max_attempts": 1},
        "workers": 1,
    }
    _plant_failure(monkeypatch)

    state = run_wave(
        config=config_file(tmp_path / "wave.yaml", config), wave=WAVE, return_state=True
    )

    summary = summary_of(state)
    assert state.is_failed()  # published, but the run is red
    assert summary.counts.failed >= 1
    stored = ResultStore(str(tmp_path / "results")).read_bytes(f"{WAVE}/{MANIFEST}")
    problems = {
        m.key for m in Manifest.from_json(stored, MANIFEST).models if m.status != "converged"
    }
    assert PLANTED in problems

    def fit_alerts() -> list[dict[str, Any]]:
        return [r for r in received if r.get("event", "").startswith("misterp.fit.")]

    def wave_alerts() -> list[dict[str, Any]]:
        return [r for r in received if r.get("event") == "misterp.wave.finished"]

    _wait_for(received, lambda: len(fit_alerts()) >= len(problems) and wave_alerts(), 120)
    time.sleep(3)  # anything else on its way (there should be nothing)

    assert {a["model"] for a in fit_alerts()} == problems, received
    assert len(fit_alerts()) == len(problems)
    planted = next(a for a in fit_alerts() if a["model"] == PLANTED)
    assert planted["status"] == "failed"
    assert planted["wave"] == WAVE
    assert "MemoryError: planted" in planted["problem"]
    assert PLANTED in planted["text"]
    assert f"misterp rerun --wave {WAVE}" in planted["text"]
    (wave_alert,) = wave_alerts()
    assert wave_alert["health"] == "unhealthy"
    assert wave_alert["failed"] == str(summary.counts.failed)
    assert PLANTED in wave_alert["problems"]
    print(json.dumps({"fit_alert": planted, "wave_alert": wave_alert}, indent=2))
