"""The staged wave and fit records: what fit workers read, and what re-runs decide on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from misterp import fitting
from misterp.config import parse_config
from misterp.diagnostics import ConvergenceReport
from misterp.mrp.model import CONVERGED, FAILED, NOT_CONVERGED, FitAttempt, FitResult
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec
from misterp.mrp.staging import (
    StagedWaveMissing,
    fit_settings_hash,
    load_staged_wave,
    plan_refits,
    previous_attempts,
    read_current_fits,
    read_fit,
    read_fit_record,
    resume_settings,
    stage_wave,
    write_fit,
)
from misterp.storage import ResultStore
from misterp.mrp.wave import PreparedWave, prepare_wave, run_wave_inline

# Plumbing, not statistics: tiny draw counts and thresholds any short run passes.
PLUMBING = {
    "sampler": {"draws": 60, "tune": 60, "chains": 2, "stored_draws": 40, "cores": 1},
    "convergence": {
        "r_hat_max": 2.0,
        "ess_bulk_min": 0,
        "ess_tail_min": 0,
        "divergences_max": 10**6,
    },
    "retry": {"max_attempts": 1},
}


def _wave(tmp_path: Path, seed: int = 3, **config: Any) -> dict[str, Any]:
    simulated = simulate_wave(
        seed,
        WaveTruthSpec(
            markets=("DE", "FR"),
            brands=("brand01",),
            n_respondents=300,
            rare_brand=None,
            association_options=("innovative",),
        ),
    )
    simulated.write(str(tmp_path / "input"))
    raw = simulated.config(str(tmp_path / "input"), str(tmp_path / "results"))
    return raw | {"wave": "2026-10"} | config


@pytest.fixture
def prepared(tmp_path: Path) -> PreparedWave:
    return prepare_wave(parse_config(_wave(tmp_path)))


def _result(prepared: PreparedWave, key: str, status: str, seed: int = 0) -> FitResult:
    spec = prepared.spec(key)
    n_cells = prepared.layouts[spec.market].n_cells
    report = ConvergenceReport(1.001, 900.0, 800.0, 0, 0.9, 2, 100, 1.5)
    draws = np.random.default_rng(seed).uniform(size=(40, n_cells)).astype(np.float32)
    return FitResult(
        spec=spec,
        status=status,
        attempts=[FitAttempt(sampler={"draws": 100}, report=report, status=status)],
        data_hash=prepared.counts[key].data_hash,
        cell_draws=None if status == FAILED else draws,
        seconds=2.0,
        n_respondents=int(prepared.counts[key].n.sum()),
    )


def test_a_staged_wave_reads_back_identical_cells_counts_and_specs(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    stage_wave(prepared, store)

    loaded = load_staged_wave(store, "2026-10")

    assert loaded.specs == prepared.specs
    assert loaded.config.model_dump() == prepared.config.model_dump()
    for market, layout in prepared.layouts.items():
        again = loaded.layouts[market]
        pd.testing.assert_frame_equal(again.frame, layout.frame)
        assert again.layout_hash == layout.layout_hash
        assert list(again.masks) == list(layout.masks)
        for group, mask in layout.masks.items():
            np.testing.assert_array_equal(again.masks[group], mask)
    for key, counts in prepared.counts.items():
        assert loaded.counts[key].data_hash == counts.data_hash
    pd.testing.assert_frame_equal(loaded.shares, prepared.shares)


def test_loading_a_wave_that_was_never_staged_names_the_path_and_the_fix(tmp_path: Path) -> None:
    store = ResultStore(str(tmp_path / "results"))
    with pytest.raises(StagedWaveMissing, match=r"2026-10/staged/plan.json.*misterp run"):
        load_staged_wave(store, "2026-10")


def test_a_fit_record_round_trips_with_its_draws_and_attempts(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    key = prepared.specs[0].key
    result = _result(prepared, key, CONVERGED)
    write_fit(store, "2026-10", result, "settings")

    again = read_fit(store, "2026-10", prepared.spec(key))

    assert again is not None
    assert again.status == CONVERGED
    assert again.cell_draws is not None
    assert result.cell_draws is not None
    np.testing.assert_array_equal(again.cell_draws, result.cell_draws)
    assert again.report == result.report
    assert again.data_hash == result.data_hash


def test_refit_plan_reuses_only_converged_unchanged_fits(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    settings = fit_settings_hash(prepared.config)
    keys = [spec.key for spec in prepared.specs]
    converged, failed, not_converged, stale, missing = keys[:5]
    write_fit(store, "2026-10", _result(prepared, converged, CONVERGED), settings)
    write_fit(store, "2026-10", _result(prepared, failed, FAILED), settings)
    write_fit(store, "2026-10", _result(prepared, not_converged, NOT_CONVERGED), settings)
    old = _result(prepared, stale, CONVERGED)
    old.data_hash = "0" * 16  # fitted on other answers
    write_fit(store, "2026-10", old, settings)

    plan = plan_refits(prepared, store)

    assert converged in plan.reused
    assert plan.reasons[failed] == FAILED
    assert plan.reasons[not_converged] == NOT_CONVERGED
    assert plan.reasons[stale] == "data changed"
    assert plan.reasons[missing] == "missing"
    assert {s.key for s in plan.to_fit} == set(keys) - {converged}
    # a stale record is not a result: it must not be published as this wave's fit
    assert set(read_current_fits(prepared, store)) == {converged, failed, not_converged}
    # other priors change every posterior: nothing is reused
    stronger = prepared.config.model_copy(
        update={"sampler": prepared.config.sampler.model_copy(update={"draws": 4000})}
    )
    prepared.config = stronger
    assert plan_refits(prepared, store).reused == []


def test_a_rerun_refits_only_the_fit_that_failed_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(_wave(tmp_path, **PLUMBING))
    broken_key = "FR/consider_brand01/yes"
    real_sample = fitting._SAMPLERS["nutpie"]

    def sample_or_crash(spec: Any, *args: Any) -> Any:
        if spec.key == broken_key:
            raise MemoryError("planted: the worker ran out of memory")
        return real_sample(spec, *args)

    monkeypatch.setitem(fitting._SAMPLERS, "nutpie", sample_or_crash)
    first = run_wave_inline(config)
    store = ResultStore(config.output)
    by_key = {m["key"]: m for m in first.manifest["models"]}
    assert by_key[broken_key]["status"] == FAILED
    assert first.manifest["counts"]["failed"] >= 1
    before = {k: read_fit_record(store, "2026-10", k) for k in by_key}

    monkeypatch.setitem(fitting._SAMPLERS, "nutpie", real_sample)
    refitted: list[str] = []
    second = run_wave_inline(config, progress=lambda r, i, n: refitted.append(r.spec.key))

    assert refitted == [broken_key]
    after = {k: read_fit_record(store, "2026-10", k) for k in by_key}
    for key in by_key:
        if key != broken_key:
            assert after[key] == before[key], key  # not refitted: the same record
    assert after[broken_key]["status"] == CONVERGED
    assert second.manifest["counts"]["failed"] == 0
    assert store.is_complete("2026-10")
    # the reused models publish exactly the estimates they had
    cols = ["market", "question_id", "option", "target_group", "mean", "q05", "q95"]
    kept = first.estimates["status"] == CONVERGED
    merged = first.estimates.loc[kept, cols].merge(
        second.estimates[cols], on=cols[:4], suffixes=("_first", "_second")
    )
    assert len(merged) == kept.sum()
    np.testing.assert_array_equal(merged["mean_first"], merged["mean_second"])
    np.testing.assert_array_equal(merged["q95_first"], merged["q95_second"])


def _record(config: Any, spec: Any, status: str, divergences: int) -> dict[str, Any]:
    report = ConvergenceReport(1.0, 800.0, 800.0, divergences, 0.9, 4, 1000)
    sampler = config.sampler.model_copy(update={"target_accept": 0.95, "tune": 500})
    return {
        "status": status,
        "spec_hash": spec.spec_hash,
        "data_hash": "abc",
        "settings_hash": fit_settings_hash(config),
        "attempts": [
            FitAttempt(sampler=sampler.model_dump(), report=report, status=status).to_dict()
        ],
    }


def test_a_refit_of_a_not_converged_model_continues_its_retry_ladder() -> None:
    config = parse_config(
        {
            "input": "in",
            "output": "out",
            "demographics": ["gender"],
            "retry": {"max_attempts": 2, "target_accept_ladder": [0.99], "tune_factor": 2},
        }
    )
    spec = ModelSpec("DE", "aware_b1", "yes", "p(yes, n) ~ 1 + gender")
    record = _record(config, spec, NOT_CONVERGED, divergences=7)

    start = resume_settings(record, spec, "abc", config)

    # one rung above the last attempt (not the config's first settings, which would repeat it)
    assert start is not None
    assert start.target_accept == 0.99
    assert start.tune == 1000
    assert start.random_seed != config.sampler.random_seed
    assert len(previous_attempts(record)) == 1
    # a converged fit, or one of other data or settings, starts from the config
    assert resume_settings(_record(config, spec, CONVERGED, 0), spec, "abc", config) is None
    assert resume_settings(record, spec, "other data", config) is None
    stricter = config.model_copy(update={"sampler": config.sampler.model_copy(update={"draws": 9})})
    assert resume_settings(record, spec, "abc", stricter) is None
