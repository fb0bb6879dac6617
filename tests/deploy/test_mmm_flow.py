"""The mmm flows on a real Prefect API (test harness), with the fake sampler of the run tests."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.mmm.test_mmm_run import CALLS, DIVERGING, fake_functions

from misterp.errors import ConfigError
from misterp.mmm.run import run_mmm
from misterp.mmm.simulate import simulate_mmm


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    import flows.mmm_flow

    simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80).write(tmp_path / "input")
    path = tmp_path / "mmm.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "input": str(tmp_path / "input"),
                "output": str(tmp_path / "out"),
                "controls": ["price"],
                "run": "r1",
                "workers": 1,
            }
        )
    )
    monkeypatch.setattr(
        flows.mmm_flow, "run_mmm", functools.partial(run_mmm, functions=fake_functions)
    )
    CALLS.clear()
    DIVERGING.clear()
    yield str(path)
    DIVERGING.clear()


@pytest.mark.usefixtures("harness")
def test_flagged_run_fails_and_the_rerun_refits_only_the_flagged_market(config_path) -> None:
    from flows.mmm_flow import rerun_failed_mmm, run_mmm_flow

    DIVERGING.add("FR")
    state = run_mmm_flow(config_path, return_state=True)
    assert state.is_failed()
    assert "1 of 2" in state.message or "not converged" in state.message, state.message
    assert CALLS == ["DE", "FR", "FR", "FR"]  # FR escalated through the retry ladder

    DIVERGING.clear()
    summary = rerun_failed_mmm(config_path, "r1")
    assert CALLS[4:] == ["FR"]  # DE reused
    assert summary.counts.converged == 2
    assert summary.headline == "media-mix run r1: all 2 models converged"


@pytest.mark.usefixtures("harness")
def test_rerun_of_an_unknown_run_and_credentials_in_parameters_are_refused(config_path) -> None:
    from flows.mmm_flow import rerun_failed_mmm, run_mmm_flow

    with pytest.raises(ConfigError, match="no media-mix run nope"):
        rerun_failed_mmm(config_path, "nope")
    mapping = yaml.safe_load(Path(config_path).read_text())
    mapping["storage_options"] = {"key": "AKIA", "secret": "s3cr3t"}
    with pytest.raises(ConfigError, match="hold credentials"):
        run_mmm_flow(mapping)
    assert CALLS == []
