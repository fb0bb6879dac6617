"""The staged wave and fit records: what fit workers read, and what re-runs decide on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from misterp.config import ConfigError, SamplerConfig
from misterp.fitting import FitResult, resume_settings
from misterp.mrp.config import parse_config
from misterp.mrp.fits import plan_refits, read_current_fits, read_fit, read_fit_record, write_fit
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.records import FitRecord
from misterp.mrp.specs import ModelSpec
from misterp.mrp.staging import StagedWaveMissing, load_staged_wave, stage_wave
from misterp.pipeline.wave import run_wave_inline
from misterp.records import Attempt, ConvergenceReport
from misterp.status import FitStatus
from misterp.storage import ResultStore
from support import PLUMBING, WAVE, crashing_for, no_mcmc_backends, small_wave_config

REPORT = ConvergenceReport(
    r_hat_max=1.001,
    ess_bulk_min=900.0,
    ess_tail_min=800.0,
    divergences=0,
    bfmi_min=0.9,
    chains=2,
    draws=100,
    seconds=1.5,
)


@pytest.fixture
def prepared(tmp_path: Path) -> PreparedWave:
    return prepare_wave(parse_config(small_wave_config(tmp_path)))


def _result(prepared: PreparedWave, key: str, status: FitStatus, seed: int = 0) -> FitResult:
    n_cells = prepared.layouts[prepared.spec(key).market].n_cells
    draws = np.random.default_rng(seed).uniform(size=(40, n_cells)).astype(np.float32)
    attempt = Attempt(sampler=SamplerConfig(draws=100), report=REPORT, status=status)
    return FitResult(
        key=key,
        status=status,
        attempts=[attempt],
        draws=None if status is FitStatus.FAILED else draws,
        seconds=2.0,
    )


def _write(
    store: ResultStore, prepared: PreparedWave, result: FitResult, *, data_hash: str | None = None
) -> FitRecord:
    planned = prepared.planned(prepared.spec(result.key))
    if data_hash is not None:
        planned = type(planned)(planned.key, planned.spec_hash, data_hash)
    return write_fit(
        store,
        WAVE,
        result,
        spec=prepared.spec(result.key).to_dict(),
        planned=planned,
        settings_hash=prepared.settings_hash,
        n_respondents=7,
    )


def test_a_staged_wave_reads_back_identical_cells_counts_and_specs(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    stage_wave(prepared, store)

    loaded = load_staged_wave(store, WAVE)

    assert loaded.specs == prepared.specs
    assert loaded.config.model_dump() == prepared.config.model_dump()
    assert loaded.stage_id == prepared.stage_id is not None
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
        load_staged_wave(store, WAVE)


def test_a_fit_record_round_trips_with_its_draws_and_attempts(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    key = prepared.specs[0].key
    result = _result(prepared, key, FitStatus.CONVERGED)
    written = _write(store, prepared, result)

    record = read_fit_record(store, WAVE, key)
    assert record == written
    again = read_fit(store, WAVE, record)

    assert again.status is FitStatus.CONVERGED
    assert again.draws is not None
    assert result.draws is not None
    np.testing.assert_array_equal(again.draws, result.draws)
    assert again.report == REPORT
    assert again.record.data_hash == prepared.counts[key].data_hash


def test_refit_plan_reuses_only_converged_unchanged_fits(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    keys = [spec.key for spec in prepared.specs]
    converged, failed, not_converged, stale, missing = keys[:5]
    _write(store, prepared, _result(prepared, converged, FitStatus.CONVERGED))
    _write(store, prepared, _result(prepared, failed, FitStatus.FAILED))
    _write(store, prepared, _result(prepared, not_converged, FitStatus.NOT_CONVERGED))
    # fitted on other answers
    _write(store, prepared, _result(prepared, stale, FitStatus.CONVERGED), data_hash="0" * 16)

    plan = plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)

    assert converged in plan.reused
    assert plan.reasons[failed] == "failed"
    assert plan.reasons[not_converged] == "not_converged"
    assert plan.reasons[stale] == "data changed"
    assert plan.reasons[missing] == "missing"
    assert set(plan.to_fit) == set(keys) - {converged}
    # a stale record is not a result: it must not be published as this wave's fit
    current = read_current_fits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    assert set(current) == {converged, failed, not_converged}
    # other sampler settings change every posterior: nothing is reused
    prepared.config = prepared.config.model_copy(
        update={"sampler": prepared.config.sampler.model_copy(update={"draws": 4000})}
    )
    assert plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash).reused == []


def test_an_unreadable_record_is_refitted_not_misread(
    prepared: PreparedWave, tmp_path: Path
) -> None:
    store = ResultStore(str(tmp_path / "results"))
    key = prepared.specs[0].key
    _write(store, prepared, _result(prepared, key, FitStatus.CONVERGED))
    path = f"{WAVE}/fits/{key}.json"
    store.write_bytes(path, store.read_bytes(path).replace(b'"schema_version": 1', b""))

    plan = plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)

    assert plan.reasons[key] == "unreadable record"


def test_a_rerun_refits_only_the_fit_that_failed_and_keeps_the_others(tmp_path: Path) -> None:
    config = parse_config(small_wave_config(tmp_path, **PLUMBING))
    broken_key = "FR/consider_brand01/yes"
    first = run_wave_inline(config, backends=crashing_for([broken_key], no_mcmc_backends()))
    store = ResultStore(config.output)
    by_key = {m.key: m for m in first.manifest.models}
    assert by_key[broken_key].status is FitStatus.FAILED
    assert first.counts.failed == 1
    before = {k: read_fit_record(store, WAVE, k) for k in by_key}

    refitted: list[str] = []
    second = run_wave_inline(
        config, progress=lambda r, i, n: refitted.append(r.key), backends=no_mcmc_backends()
    )

    assert refitted == [broken_key]
    after = {k: read_fit_record(store, WAVE, k) for k in by_key}
    for key in by_key:
        if key != broken_key:
            assert after[key] == before[key], key  # not refitted: the same record
    record = after[broken_key]
    assert record is not None
    assert record.status is FitStatus.CONVERGED
    assert second.counts.failed == 0
    assert store.is_complete(WAVE)
    # the reused models publish exactly the estimates they had
    cols = ["market", "question_id", "option", "target_group", "mean", "q05", "q95"]
    kept = first.estimates["status"] == "converged"
    merged = first.estimates.loc[kept, cols].merge(
        second.estimates[cols], on=cols[:4], suffixes=("_first", "_second")
    )
    assert len(merged) == kept.sum()
    np.testing.assert_array_equal(merged["mean_first"], merged["mean_second"])
    np.testing.assert_array_equal(merged["q95_first"], merged["q95_second"])


def _record(config: Any, spec: ModelSpec, status: FitStatus, divergences: int) -> FitRecord:
    report = REPORT.model_copy(update={"divergences": divergences, "seconds": float("nan")})
    sampler = config.sampler.model_copy(update={"target_accept": 0.95, "tune": 500})
    return FitRecord(
        key=spec.key,
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash,
        data_hash="abc",
        settings_hash="settings",
        status=status,
        attempts=(Attempt(sampler=sampler, report=report, status=status),),
        seconds=1.0,
        n_respondents=10,
        has_draws=True,
    )


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
    record = _record(config, spec, FitStatus.NOT_CONVERGED, divergences=7)

    def resume(record: FitRecord, data_hash: str = "abc", settings: str = "settings") -> Any:
        return resume_settings(
            record,
            expected={"spec": spec.spec_hash, "data": data_hash, "settings": settings},
            policy=config.retry,
            thresholds=config.convergence,
        )

    start = resume(record)

    # one rung above the last attempt (not the config's first settings, which would repeat it)
    assert start is not None
    assert start.target_accept == 0.99
    assert start.tune == 1000
    assert start.random_seed != config.sampler.random_seed
    # a converged fit, or one of other data or settings, starts from the config
    assert resume(_record(config, spec, FitStatus.CONVERGED, 0)) is None
    assert resume(record, data_hash="other data") is None
    assert resume(record, settings="other settings") is None


@pytest.mark.parametrize("tracking", [None, {"period": "month"}], ids=["untracked", "tracked"])
def test_a_staged_wave_reads_back_under_the_same_period_rule_it_was_staged_with(
    tmp_path: Path, tracking: dict[str, str] | None
) -> None:
    # Without a tracking section a wave id that is no period is valid (tracking skips it);
    # the staged plan must not read back as if the section had been written (issue 26).
    raw = small_wave_config(tmp_path, wave="w1", spec={"markets": ("DE",)})
    if tracking is not None:
        raw["tracking"] = tracking
        with pytest.raises(ConfigError, match="wave id 'w1' is not a month"):
            parse_config(raw)
        return
    prepared = prepare_wave(parse_config(raw))
    store = ResultStore(str(tmp_path / "results"))
    stage_wave(prepared, store)

    loaded = load_staged_wave(store, "w1")

    assert loaded.wave_id == "w1"
    assert loaded.config.model_dump() == prepared.config.model_dump()


def test_a_fit_whose_staged_wave_the_store_lost_is_an_outage_not_an_input_error(
    tmp_path: Path,
) -> None:
    """Issue 26 (re-probed): an S3 endpoint that came back empty mid-run made every fit say
    'never prepared' and the run exit 2 ("invalid input"); the input was fine, the store lost
    what the run had staged, so it is an outage (exit 3) naming the store, and a re-run is the
    fix."""
    from misterp.mrp.wave import fit_staged
    from misterp.storage import StoreUnavailable

    output = str(tmp_path / "emptied")
    with pytest.raises(StoreUnavailable) as caught:
        fit_staged(output, WAVE, "DE/aware_brand01/yes")
    assert f"store {output} is unavailable" in str(caught.value)
    assert "lost the wave this run staged" in str(caught.value)
