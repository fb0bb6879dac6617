"""``misterp waves``: one line per wave, incomplete ones named, and no Prefect imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from flows.cli import app
from misterp.storage import ResultStore
from tracking_support import publish_fake_wave

ROOT = Path(__file__).resolve().parents[2]
DRAWS = {"DE/aware_b1/yes": {"all": np.full(4, 0.5)}}


def test_waves_lists_each_wave_on_one_line(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path))
    publish_fake_wave(store, "2026-11", DRAWS)
    publish_fake_wave(store, "2026-10", DRAWS, complete=False)

    result = CliRunner().invoke(app, ["waves", "--output", str(tmp_path)])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "2026-10  incomplete: no manifest (running or stopped)"
    assert lines[1].startswith("2026-11  1 model, healthy: all 1 models converged; published ")
    assert lines[2] == f"1 of 2 waves complete in {tmp_path}"


def test_waves_on_an_empty_root_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["waves", "--output", str(tmp_path)])
    assert (result.exit_code, result.stdout.strip()) == (0, f"no waves in {tmp_path}")


def test_waves_does_not_import_prefect(tmp_path: Path) -> None:
    code = (
        "import sys; from flows.cli import main; "
        f"code = main(['waves', '--output', {str(tmp_path)!r}]); "
        "print(code, 'prefect' in sys.modules)"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert process.stdout.splitlines()[-1] == "0 False", process.stderr
