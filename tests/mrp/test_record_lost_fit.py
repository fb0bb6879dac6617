"""A fit whose worker process died twice is recorded as failed, with the reason, and refitted."""

from __future__ import annotations

from pathlib import Path

from misterp.mrp.config import parse_config
from misterp.mrp.fits import plan_refits, read_current_fits
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.staging import stage_wave
from misterp.mrp.wave import fit_and_record, publish_wave, record_lost_fit
from misterp.status import FitStatus
from misterp.storage import ResultStore
from support import PLUMBING, WAVE, no_mcmc_backends, small_wave_config

REASON = "worker process died (signal 9?) twice; planted"


def test_a_lost_fit_is_published_failed_with_its_reason_and_planned_again(
    tmp_path: Path,
) -> None:
    config = parse_config(small_wave_config(tmp_path, spec={"markets": ("DE",)}, **PLUMBING))
    prepared = prepare_wave(config)
    store = ResultStore(config.output)
    stage_wave(prepared, store)
    lost, *fitted = [spec for spec in prepared.specs if spec.base_key is None]
    for spec in fitted:
        fit_and_record(prepared, spec, store, backends=no_mcmc_backends())

    summary = record_lost_fit(config.output, WAVE, lost.key, REASON)

    assert summary.status is FitStatus.FAILED
    assert summary.error == REASON
    fits = read_current_fits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    outcome = publish_wave(prepared, fits)
    (model,) = [m for m in outcome.manifest.models if m.key == lost.key]
    assert model.status is FitStatus.FAILED
    assert model.attempts[-1].error == REASON
    rows = outcome.estimates[outcome.estimates["question_id"] == lost.question_id]
    assert set(rows["status"]) == {"failed"}
    assert rows["mean"].isna().all()
    assert rows["note"].str.startswith("worker process died (signal 9?) twice").all()
    assert "worker process died (signal 9?) twice" in outcome.health.to_markdown()
    plan = plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    assert lost.key in plan.to_fit
    assert plan.reasons[lost.key] == "failed"
