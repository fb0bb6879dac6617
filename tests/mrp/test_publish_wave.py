"""Publishing a wave: what a re-publish leaves behind; estimates that belong to their manifest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from misterp.mrp.config import parse_config
from misterp.mrp.fits import read_current_fits
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.records import Manifest, check_estimates
from misterp.mrp.wave import ESTIMATE_COLUMNS, WaveOutcome, draws_path, fit_and_record, publish_wave
from misterp.pipeline.wave import run_wave_inline
from misterp.records import RecordError
from misterp.storage import MANIFEST, ResultStore
from misterp.tracking.competitors import COMPETITOR_COLUMNS, COMPETITORS_FILE, build_competitors
from misterp.tracking.funnel import FUNNEL_COLUMNS, FUNNEL_FILE, build_funnel
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


def test_a_published_wave_has_its_funnel_and_competitor_tables_listed_in_the_manifest(
    tmp_path: Path,
) -> None:
    # Two brands in one market; the funnel is configured, since consideration may be asked to
    # everyone (then it is checked for coherence) or among the aware (then multiplied).
    raw = small_wave_config(
        tmp_path,
        spec={"markets": ("DE",), "brands": ("brand01", "brand02")},
        **PLUMBING,
        reporting={"interval": 0.95, "funnel": ["aware", "consider"]},
    )
    config = parse_config(raw)
    outcome = run_wave_inline(config, backends=no_mcmc_backends())
    store = ResultStore(config.output)
    groups = set(outcome.estimates["target_group"])

    assert outcome.manifest.files["funnel"] == FUNNEL_FILE
    assert outcome.manifest.files["competitors"] == COMPETITORS_FILE
    funnel = store.read_parquet(f"{WAVE}/{FUNNEL_FILE}")
    assert list(funnel.columns) == list(FUNNEL_COLUMNS)
    # per brand x group: aware (stage 1) and consider (stage 2), asked to everyone
    assert len(funnel) == 2 * len(groups) * 2
    assert set(funnel["funnel"]) == {"aware > consider"}
    assert set(zip(funnel["stage"], funnel["stage_name"], strict=True)) == {
        (1, "aware"),
        (2, "consider"),
    }
    bases = {m.spec["question_id"]: m.spec["base_question"] for m in outcome.manifest.models}
    conditional = bases["consider_brand01"] == "aware_brand01"
    assert funnel["conditional"].tolist() == [conditional and s == 2 for s in funnel["stage"]]
    assert set(funnel["interval"]) == {0.95}
    second = funnel.query("stage == 2")
    assert second["coherent"].tolist() == (~(second["p_above_previous"] > 0.5)).tolist()

    competitors = store.read_parquet(f"{WAVE}/{COMPETITORS_FILE}")
    assert list(competitors.columns) == list(COMPETITOR_COLUMNS)
    # aware, consider and the association option, each with both brands in every group
    assert set(zip(competitors["family"], competitors["option"], strict=True)) == {
        ("aware", "yes"),
        ("consider", "yes"),
        ("assoc", "innovative"),
    }
    assert len(competitors) == 3 * len(groups) * 2
    shares = competitors.groupby(["family", "option", "target_group"])["share_of_total_mean"]
    np.testing.assert_allclose(shares.sum().to_numpy(), 1.0, atol=1e-6)
    p_first = competitors.groupby(["family", "option", "target_group"])["p_rank_1"].sum()
    np.testing.assert_allclose(p_first.to_numpy(), 1.0, atol=1e-12)

    # the same tables again from the stored draws, for a wave published before they existed
    pd.testing.assert_frame_equal(build_funnel(store, WAVE), funnel)
    pd.testing.assert_frame_equal(build_competitors(store, WAVE), competitors)


def test_every_estimate_row_carries_its_interval_moe_and_base_flag(tmp_path: Path) -> None:
    raw = small_wave_config(
        tmp_path,
        spec={"markets": ("DE",)},
        **PLUMBING,
        reporting={"interval": 0.95, "low_base": 200, "very_low_base": 100},
    )
    outcome = run_wave_inline(parse_config(raw), backends=no_mcmc_backends())
    estimates = outcome.estimates
    assert list(estimates.columns) == list(ESTIMATE_COLUMNS)
    assert set(estimates["interval"]) == {0.95}
    np.testing.assert_allclose(estimates["moe"], (estimates["upper"] - estimates["lower"]) / 2)
    assert (estimates["lower"] <= estimates["q05"]).all()
    assert (estimates["upper"] >= estimates["q95"]).all()
    expected = [
        "modelled_only"
        if n == 0
        else "very_low_base"
        if n < 100
        else "low_base"
        if n < 200
        else "ok"
        for n in estimates["n"]
    ]
    assert estimates["base_flag"].tolist() == expected
    assert {"ok", "very_low_base"} <= set(estimates["base_flag"])  # 300 respondents in "all"
    # Kish: between 1 and n wherever there is a base
    based = estimates[estimates["n"] > 0]
    assert ((based["raked_ess"] >= 1 - 1e-9) & (based["raked_ess"] <= based["n"] + 1e-9)).all()


def test_question_labels_travel_to_the_estimates_and_the_report_without_a_refit(
    tmp_path: Path,
) -> None:
    raw = small_wave_config(tmp_path, spec={"markets": ("DE",)}, **PLUMBING)
    questions_csv = tmp_path / "input" / "questions.csv"
    questions = pd.read_csv(questions_csv)
    questions["label"] = questions["question_id"].map({"aware_brand01": "Heard of <Brand 01>"})
    questions.to_csv(questions_csv, index=False)
    config = parse_config(raw)
    outcome = run_wave_inline(config, backends=no_mcmc_backends())

    labelled = outcome.estimates.drop_duplicates("question_id").set_index("question_id")["label"]
    assert labelled["aware_brand01"] == "Heard of <Brand 01>"
    assert labelled.drop("aware_brand01").isna().all()
    page = (tmp_path / "results" / WAVE / "report" / "index.html").read_text()
    assert "Heard of &lt;Brand 01&gt;" in page  # shown, and escaped
    assert "Questions are shown by their ids" not in page

    # relabelling is not a change of the model: a re-run refits nothing
    questions["label"] = "Renamed"
    questions.to_csv(questions_csv, index=False)
    fitted: list[str] = []
    run_wave_inline(
        config, backends=no_mcmc_backends(), progress=lambda r, _n, _t: fitted.append(r.key)
    )
    assert fitted == []
