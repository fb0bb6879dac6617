"""``misterp report``: writes the report, prints where index.html is, exits like the others."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import ExitCode, app
from misterp.reporting.write import INDEX_FILE, REPORT_FOLDER
from misterp.storage import ResultStore
from tracking_support import publish_fake_wave

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """The command sets Prefect's environment and a root log handler; undo both after a test."""
    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    misterp_level = logging.getLogger("misterp").level
    yield
    os.environ.clear()
    os.environ.update(environ)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("misterp").setLevel(misterp_level)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    # an exception that escaped the command would be a traceback for a user
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def test_report_writes_the_folder_and_prints_the_page(results: Path) -> None:
    index = results / "2026-10" / REPORT_FOLDER / INDEX_FILE
    index.unlink()

    code, out, err = invoke("report", "--output", str(results), "--wave", "2026-10")

    assert code == ExitCode.OK, err
    assert out.strip().splitlines()[-1] == str(index)
    assert index.exists()
    assert "Trends" in index.read_text()


def test_report_of_a_missing_or_invalid_wave_exits_2_with_one_line(results: Path) -> None:
    code, out, err = invoke("report", "--output", str(results), "--wave", "2027-01")
    assert code == ExitCode.INVALID
    assert out == ""
    assert err.strip().splitlines() == [
        f"wave '2027-01' is not complete in {results} (no manifest): nothing to report; "
        f"list the waves with `misterp waves --output {results}` and choose a complete one"
    ]

    code, _, err = invoke("report", "--output", str(results), "--wave", "../2026-10")
    assert code == ExitCode.INVALID
    assert err.startswith("wave id '../2026-10' contains '/'")
    assert len(err.strip().splitlines()) == 1


def test_report_needs_output_and_wave_and_has_help_with_an_example() -> None:
    code, _, _ = invoke("report", "--wave", "2026-10")
    assert code == 2  # Typer's usage error
    code, out, _ = invoke("report", "--help")
    assert code == 0
    assert "Example: misterp report --output" in " ".join(out.split())


def test_report_does_not_import_prefect(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-11", {"DE/aware_b1/yes": {"all": np.full(4, 0.5)}})
    code = (
        "import sys; from flows.cli import main; "
        f"code = main(['report', '--output', {str(tmp_path)!r}, '--wave', '2026-11']); "
        "print(code, 'prefect' in sys.modules)"
    )
    process = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "MISTERP_LOG_LEVEL": "WARNING"},
    )
    assert process.stdout.splitlines()[-1] == "0 False", process.stderr
    assert (tmp_path / "2026-11" / REPORT_FOLDER / INDEX_FILE).exists()
