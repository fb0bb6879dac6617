"""The wave flows take the wave's lease: a locked wave is refused before anything is written.

No sampling: every run here stops at the lease or at the wave id, after validation at most.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.wave import rerun_wave, run_wave
from misterp.config import ConfigError
from misterp.lease import RunLocked, acquire_lease, lease_path, read_lease
from misterp.storage import ResultStore
from support import WAVE, config_file, small_wave_config


def test_run_wave_is_refused_while_another_run_holds_the_wave(
    prefect_api: None, tmp_path: Path
) -> None:
    config = small_wave_config(tmp_path, spec={"markets": ("DE",)})
    store = ResultStore(config["output"])
    holder = acquire_lease(store, WAVE, run_id="other-run", settle=0.0, heartbeat=False)

    path = config_file(tmp_path / "wave.yaml", config)

    state = run_wave(config=path, return_state=True)

    assert state.is_failed()
    with pytest.raises(RunLocked, match=r"run other-run on host .*--force"):
        state.result()
    assert store.list(WAVE) == [lease_path(WAVE)]  # nothing staged, fitted or published
    assert read_lease(store, WAVE) == holder.record


def test_rerun_wave_refuses_a_wave_id_that_is_not_a_folder_name(
    prefect_api: None, tmp_path: Path
) -> None:
    state = rerun_wave(wave="../2026-09", output=str(tmp_path / "results"), return_state=True)

    assert state.is_failed()
    with pytest.raises(ConfigError, match=r"wave id '\.\./2026-09' contains '/'"):
        state.result()
    assert not (tmp_path / "results").exists()
