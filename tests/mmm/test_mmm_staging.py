"""Staging a media-mix run, fitting one market from it, and the run's lease. No sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.mmm.test_mmm_run import CALLS, fake_functions

from flows.cli import ExitCode, main
from misterp.errors import ConfigError
from misterp.lease import LeaseLost, RunLocked, read_lease
from misterp.mmm.config import MMMConfig
from misterp.mmm.model import MarketInput, prepare_market
from misterp.mmm.run import settings_hash
from misterp.mmm.simulate import simulate_mmm
from misterp.mmm.staging import (
    lease_run,
    open_staged_market,
    read_staged_run,
    stage_run,
    staged_config,
)
from misterp.mmm.validation import read_mmm_input
from misterp.mmm.worker import fit_staged_market, record_lost_market
from misterp.pipeline.mmm import run_mmm
from misterp.status import FitStatus
from misterp.storage import ResultStore


@pytest.fixture
def config(tmp_path: Path) -> MMMConfig:
    sim = simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    sim.write(tmp_path / "input")
    return MMMConfig(
        input=str(tmp_path / "input"),
        output=str(tmp_path / "out"),
        controls=["price"],
        run="r1",
        storage_options={"auto_mkdir": True},
    )


def _staged(config: MMMConfig) -> tuple[ResultStore, dict[str, MarketInput]]:
    data = read_mmm_input(config)
    inputs = {m: prepare_market(data, m, config) for m in data.markets}
    rng = np.random.default_rng(20250601)
    de = inputs["DE"]
    # a market with KPI draws and lift tests, so every staged file is written and read back
    inputs["DE"] = MarketInput(
        market="DE",
        frame=de.frame,
        channels=de.channels,
        controls=de.controls,
        holdout_weeks=de.holdout_weeks,
        data_hash=de.data_hash,
        kpi_draws=rng.normal(100.0, 1.0, size=(3, len(de.frame))),
        lift_tests=pd.DataFrame(
            {"channel": ["tv"], "x": [1.0], "delta_x": [0.5], "delta_y": [2.0], "sigma": [0.25]}
        ),
    )
    store = ResultStore(config.output)
    stage_run(store, "r1", config, inputs, dropped={"FR": ["radio"]}, notes=["a note"])
    return store, inputs


def test_a_staged_market_reads_back_exactly_and_the_config_keeps_its_settings(config) -> None:
    store, inputs = _staged(config)

    staged = read_staged_run(store, "r1")
    for market, expected in inputs.items():
        got = open_staged_market(store, "r1", market, staged)
        pd.testing.assert_frame_equal(got.frame, expected.frame)
        assert (got.channels, got.controls) == (expected.channels, expected.controls)
        assert (got.holdout_weeks, got.data_hash) == (expected.holdout_weeks, expected.data_hash)
        if expected.kpi_draws is None:
            assert got.kpi_draws is None
        else:
            np.testing.assert_array_equal(got.kpi_draws, expected.kpi_draws)
        if expected.lift_tests is None:
            assert got.lift_tests is None
        else:
            pd.testing.assert_frame_equal(got.lift_tests, expected.lift_tests)
    assert staged.markets["FR"].dropped_channels == ("radio",)
    assert staged.notes == ("a note",)
    # the worker's config fits with the same settings, on its own storage options
    reread = staged_config(staged, config.output, {"anon": False})
    assert settings_hash(reread) == settings_hash(config)
    assert reread.storage_options == {"anon": False}


def test_storage_options_are_never_written_into_the_store(config) -> None:
    secret = config.model_copy(update={"storage_options": {"key": "AKIA-planted"}})
    store, _ = _staged(secret)
    for path in store.list("mmm/r1/staged"):
        assert b"AKIA-planted" not in store.read_bytes(path), path
    assert "storage_options" not in read_staged_run(store, "r1").config


@pytest.mark.parametrize(("run", "market"), [("../r0", "DE"), ("r1", "../../x"), ("r1", "D E")])
def test_ids_are_checked_before_they_become_paths(config, run, market) -> None:
    _staged(config)
    with pytest.raises(ConfigError, match=r"id '.*' (contains|starts)"):
        fit_staged_market(config.output, run, market, functions=fake_functions)


def test_a_market_not_in_the_run_is_refused_naming_the_markets(config) -> None:
    _staged(config)
    with pytest.raises(ConfigError, match=r"market 'IT' is not part of .*its markets: DE, FR"):
        fit_staged_market(config.output, "r1", "IT", functions=fake_functions)


def test_a_worker_fits_one_market_from_output_run_and_market_alone(config) -> None:
    _staged(config)
    CALLS.clear()

    record = fit_staged_market(config.output, "r1", "FR", functions=fake_functions)

    assert CALLS == ["FR"]
    assert record.status is FitStatus.CONVERGED
    assert record.dropped_channels == ("radio",)
    store = ResultStore(config.output)
    assert store.exists("mmm/r1/fits/FR.json")
    assert store.exists("mmm/r1/fits/FR.npy")
    assert not store.exists("mmm/r1/fits/DE.json")


def test_a_fit_that_lost_the_lease_writes_nothing(config) -> None:
    store, _ = _staged(config)
    mine = lease_run(store, "r1", run_id="run-a", settle=0.0, heartbeat=False)
    lease_run(store, "r1", run_id="run-b", force=True, settle=0.0, heartbeat=False)

    with pytest.raises(LeaseLost, match="run run-a lost media-mix run r1 to run run-b"):
        fit_staged_market(config.output, "r1", "FR", run_id=mine.run_id, functions=fake_functions)
    with pytest.raises(LeaseLost, match="run run-a lost media-mix run r1"):
        record_lost_market(config.output, "r1", "FR", "died", run_id=mine.run_id)

    assert store.list("mmm/r1/fits") == []
    fit_staged_market(config.output, "r1", "FR", run_id="run-b", functions=fake_functions)
    assert store.exists("mmm/r1/fits/FR.json")


def test_a_second_run_of_a_held_run_id_is_refused_and_force_takes_it_over(config) -> None:
    store = ResultStore(config.output)
    holder = lease_run(store, "r1", run_id="other-run", settle=0.0, heartbeat=False)

    with pytest.raises(RunLocked, match=r"media-mix run r1 .* run other-run on host .*--force"):
        run_mmm(config, workers=1, functions=fake_functions, settle=0.0)
    assert store.list("mmm/r1") == ["mmm/r1/lease.json"]  # nothing staged, fitted or published

    outcome = run_mmm(config, workers=1, functions=fake_functions, settle=0.0, force=True)

    assert outcome.counts.converged == 2
    lease = read_lease(store, "mmm/r1")
    assert lease is not None
    assert not lease.held
    assert lease.taken_over_ids == (holder.run_id,)


def test_mmm_run_exits_locked_naming_the_holder(tmp_path, capsys) -> None:
    simulate_mmm(5, markets=("DE",), n_channels=2, n_weeks=80).write(tmp_path / "input")
    path = tmp_path / "mmm.yaml"
    path.write_text(f"input: {tmp_path / 'input'}\noutput: {tmp_path / 'out'}\nrun: r1\n")
    store = ResultStore(str(tmp_path / "out"))
    lease_run(store, "r1", run_id="other-run", settle=0.0, heartbeat=False)

    assert main(["mmm", "run", "--config", str(path)]) == ExitCode.LOCKED

    err = capsys.readouterr().err
    assert "media-mix run r1" in err
    assert "run other-run on host" in err
    assert "--force" in err


def test_a_staged_config_with_a_brand_link_reads_back_as_the_user_wrote_it(config) -> None:
    # brand_link's role is written `as:` in YAML; a staged config dumped by field name
    # (`role:`) was refused when a worker or the publish step read it back
    linked = MMMConfig.model_validate(
        config.model_dump()
        | {
            "brand_link": {
                "trends": str(Path(config.input) / "trends.parquet"),
                "question_id": "aware_brand01",
                "option": "yes",
                "as": "control",
            }
        }
    )
    store = ResultStore(linked.output)
    data = read_mmm_input(linked.model_copy(update={"brand_link": None}))
    inputs = {m: prepare_market(data, m, linked) for m in data.markets}
    stage_run(store, "r1", linked, inputs)

    reread = staged_config(read_staged_run(store, "r1"), linked.output)
    assert reread.brand_link == linked.brand_link
    assert settings_hash(reread) == settings_hash(linked)
