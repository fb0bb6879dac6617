"""Publishing a wave: what a re-publish leaves behind; estimates that belong to their manifest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from misterp.config import parse_config
from misterp.fitstore import read_current_fits
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.wave import WaveOutcome, draws_path, fit_and_record, publish_wave
from misterp.records import Manifest, RecordError, check_estimates
from misterp.storage import MANIFEST, ResultStore
from support import PLUMBING, WAVE, no_mcmc_backends, small_wave_config


@pytest.fixture
def prepared(tmp_path: Path) -> PreparedWave:
    # one market: aware, consider and an association question based on aware
    config = small_wave_config(tmp_path, spec={"markets": ("DE",)}, **PLUMBING)
    return prepare_wave(parse_config(config))


def _publish(prepared: PreparedWave, store: ResultStore) -> WaveOutcome:
    fits = read_current_fits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    return publish_wave(prepared, fits)


def test_a_model_that_left_the_plan_loses_its_draws_and_its_place_in_the_manifest(
    prepared: PreparedWave,
) -> None:
    store = ResultStore(prepared.config.output)
    for spec in prepared.specs:
        fit_and_record(prepared, spec, store, backends=no_mcmc_backends())
    assert len(prepared.specs) == 3
    first = _publish(prepared, store)
    paths = {spec.key: f"{WAVE}/{draws_path(spec)}" for spec in prepared.specs}
    assert all(store.exists(path) for path in paths.values())
    assert {m.key for m in first.manifest.models} == set(paths)

    dropped = next(spec for spec in prepared.specs if spec.question_id.startswith("consider"))
    kept = [spec for spec in prepared.specs if spec != dropped]
    second = _publish(dataclasses.replace(prepared, specs=kept), store)

    assert not store.exists(paths[dropped.key])
    assert store.list(f"{WAVE}/draws") == sorted(paths[spec.key] for spec in kept)
    manifest = Manifest.from_json(store.read_bytes(f"{WAVE}/{MANIFEST}"), MANIFEST)
    assert manifest == second.manifest
    assert {m.key for m in manifest.models} == {spec.key for spec in kept}
    assert dropped.key not in manifest.model_dump_json()
    estimates = store.read_parquet(f"{WAVE}/estimates.parquet")
    assert dropped.question_id not in set(estimates["question_id"])


def test_estimates_are_checked_against_the_hash_their_manifest_published(
    prepared: PreparedWave,
) -> None:
    store = ResultStore(prepared.config.output)
    for spec in prepared.specs:
        fit_and_record(prepared, spec, store, backends=no_mcmc_backends())
    outcome = _publish(prepared, store)
    manifest = Manifest.from_json(store.read_bytes(f"{WAVE}/{MANIFEST}"), MANIFEST)
    path = f"{WAVE}/estimates.parquet"

    check_estimates(manifest, store.read_bytes(path), path)
    assert manifest.describes_estimates(store.read_bytes(path))

    # another run rewrote the estimates after this manifest was published
    other = outcome.estimates.assign(mean=outcome.estimates["mean"] / 2)
    store.write_parquet(path, other)
    assert not manifest.describes_estimates(store.read_bytes(path))
    with pytest.raises(RecordError, match=r"2026-10/estimates.parquet does not belong to the "):
        check_estimates(manifest, store.read_bytes(path), path)
    with pytest.raises(RecordError, match="publish the wave again"):
        check_estimates(manifest, store.read_bytes(path), path)
    pd.testing.assert_frame_equal(store.read_parquet(path), other)
