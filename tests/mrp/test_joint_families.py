"""Joint models of a question family: planning, one fit per family, one record per option.

No MCMC: a backend that returns P(yes | stacked cell) = a known function of the cell's
position shows that every option gets exactly its own slice of the joint posterior.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from misterp.config import SamplerConfig
from misterp.mrp.cells import CellCounts, MarketCells
from misterp.mrp.config import ModelConfig, parse_config
from misterp.mrp.fits import plan_refits, read_current_fits, read_fit_record
from misterp.mrp.joint import split_draws, stacked_cells, stacked_counts
from misterp.mrp.model import Backend
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.specs import FormulaError, ModelSpec, joint_formula
from misterp.mrp.staging import stage_wave
from misterp.mrp.wave import fit_and_record, publish_wave, record_lost_fit
from misterp.pipeline.wave import run_wave_inline
from misterp.status import FitStatus
from misterp.storage import ResultStore
from support import PLUMBING, WAVE, cell_posterior, fake_backends, small_wave_config

OPTIONS = ("innovative", "trustworthy", "good_value")
BATTERY = {"markets": ("DE",), "brands": ("brand01", "brand02"), "association_options": OPTIONS}


# --- the joint formula --------------------------------------------------------------------


def test_joint_formula_adds_a_deviation_per_item_for_every_term() -> None:
    formula = "p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)"
    assert joint_formula(formula) == (
        "p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender) + (1|option) + (1|gender:option)"
        " + (1|age:option) + (1|age:gender:option)"
    )


@pytest.mark.parametrize(
    ("formula", "complaint"),
    [
        ("p(yes, n) ~ 0 + gender", "needs an intercept"),
        ("p(yes, n) ~ 1 + (gender|age)", r"cannot take the term '\(gender\|age\)'"),
    ],
)
def test_joint_formula_refuses_terms_it_cannot_give_a_deviation(
    formula: str, complaint: str
) -> None:
    with pytest.raises(FormulaError, match=complaint):
        joint_formula(formula)


# --- config and planning ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("families", "complaint"),
    [
        ({"../up": ["assoc_brand01"]}, "joint_families name '../up' contains '/'"),
        ({"a": []}, "joint_families.a lists no question"),
        ({"a": ["q1"], "b": ["q1"]}, "'q1' is in joint_families.a and joint_families.b"),
    ],
)
def test_joint_families_config_refuses_unsafe_names_empty_and_shared_questions(
    families: dict[str, list[str]], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        ModelConfig(joint_families=families)


def _prepared(tmp_path: Path, model: dict[str, Any], **spec: Any) -> Any:
    raw = small_wave_config(tmp_path, spec=BATTERY | spec, model=model, **PLUMBING)
    return prepare_wave(parse_config(raw))


def test_multi_mode_makes_each_battery_one_family_and_leaves_single_questions_alone(
    tmp_path: Path,
) -> None:
    prepared = _prepared(tmp_path, {"joint_questions": "multi"})
    by_question: dict[str, set[str | None]] = {}
    for spec in prepared.specs:
        by_question.setdefault(spec.question_id, set()).add(spec.joint)
    assert by_question["assoc_brand01"] == {"assoc_brand01"}
    assert by_question["assoc_brand02"] == {"assoc_brand02"}
    assert by_question["aware_brand01"] == {None}
    assert by_question["consider_brand02"] == {None}
    members = prepared.members(prepared.spec("DE/assoc_brand01/trustworthy"))
    assert [m.option for m in members] == sorted(OPTIONS)
    assert all("(1|age:option)" in m.formula for m in members)
    lone = prepared.spec("DE/aware_brand01/yes")
    assert "option" not in lone.formula


def test_a_named_family_joins_batteries_across_brands(tmp_path: Path) -> None:
    families = {"associations": ["assoc_brand01", "assoc_brand02"]}
    prepared = _prepared(tmp_path, {"joint_families": families})
    members = prepared.members(prepared.spec("DE/assoc_brand02/innovative"))
    assert len(members) == 2 * len(OPTIONS)
    assert {m.joint for m in members} == {"associations"}
    unit = prepared.fit_unit(members[-1])
    assert unit.lead == members[0]
    assert unit.layout.n_cells == len(members) * prepared.layouts["DE"].n_cells


def test_a_battery_with_one_option_stays_an_ordinary_model(tmp_path: Path) -> None:
    prepared = _prepared(
        tmp_path, {"joint_questions": "multi"}, association_options=("innovative",)
    )
    assert all(spec.joint is None for spec in prepared.specs)


@pytest.mark.parametrize(
    ("model", "complaint"),
    [
        ({"joint_families": {"f": ["assoc_brand09"]}}, r"names question\(s\) \['assoc_brand09'\]"),
        ({"joint_families": {"aware_brand01": ["assoc_brand01"]}}, "is a question id"),
        (
            {
                "joint_families": {"f": ["assoc_brand01", "assoc_brand02"]},
                "formulas": {"assoc_brand01": "p(yes, n) ~ 1 + gender"},
            },
            "mixes formulas",
        ),
    ],
)
def test_planning_refuses_families_it_cannot_fit(
    tmp_path: Path, model: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(FormulaError, match=complaint):
        _prepared(tmp_path, model)


def test_an_independent_specs_hash_is_the_one_it_had_before_joint_models() -> None:
    spec = ModelSpec("DE", "assoc_b1", "fun", "p(yes, n) ~ 1", "b1", "aware_b1", "yes")
    # the fields added since (joint, profile) leave an unset spec's hash as it was
    added = {"joint", "profile"}
    before = {k: v for k, v in asdict(spec).items() if k not in {"brand", "label", *added}}
    digest = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    assert spec.spec_hash == digest
    assert ModelSpec(**(asdict(spec) | {"joint": "assoc_b1"})).spec_hash != digest
    assert ModelSpec(**(asdict(spec) | {"profile": "user"})).spec_hash != digest


def test_fit_units_name_each_family_once_by_its_lead(tmp_path: Path) -> None:
    prepared = _prepared(tmp_path, {"joint_questions": "multi"})
    keys = [spec.key for spec in prepared.specs]
    units = prepared.fit_units(reversed(keys))
    assert len(units) == len(keys) - 2 * (len(OPTIONS) - 1)
    assert "DE/assoc_brand01/good_value" in units  # the first option in key order leads
    assert "DE/assoc_brand01/trustworthy" not in units


def test_new_answers_to_one_item_refit_its_whole_family_and_nothing_else(
    tmp_path: Path,
) -> None:
    raw = small_wave_config(tmp_path, spec=BATTERY, model={"joint_questions": "multi"}, **PLUMBING)
    config = parse_config(raw)
    run_wave_inline(config, backends=position_backends([]))
    answers_file = tmp_path / "input" / "answers.csv"
    answers = pd.read_csv(answers_file)
    row = answers.index[
        (answers["question_id"] == "assoc_brand01") & (answers["option"] == "trustworthy")
    ][0]
    answers.loc[row, "selected"] = 1 - answers.loc[row, "selected"]
    answers.to_csv(answers_file, index=False)

    prepared = prepare_wave(config)
    first, second, third = prepared.members(prepared.spec("DE/assoc_brand01/innovative"))
    assert prepared.counts[first.key].data_hash != prepared.planned(first).data_hash
    assert len({prepared.planned(m).data_hash for m in (first, second, third)}) == 1
    store = ResultStore(config.output)
    plan = plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    assert sorted(plan.to_fit) == sorted(m.key for m in (first, second, third)), plan.reasons
    assert prepared.fit_units(plan.to_fit) == [first.key]


# --- stacking and splitting -----------------------------------------------------------------


def test_stacked_cells_and_counts_line_up_item_after_item() -> None:
    frame = pd.DataFrame({"age": pd.Categorical(["old", "young"]), "population": [2.0, 5.0]})
    layout = MarketCells("DE", frame, ("age",))
    stacked = stacked_cells(layout, 3)
    counts = stacked_counts(
        [
            CellCounts(np.array([1, 2]), np.array([3, 4])),
            CellCounts(np.array([5, 6]), np.array([7, 8])),
        ]
    )
    assert stacked.n_cells == 6
    assert stacked.frame["age"].astype(str).tolist() == ["old", "young"] * 3
    assert counts.yes.tolist() == [1, 2, 5, 6]
    assert counts.n.tolist() == [3, 4, 7, 8]
    with pytest.raises(ValueError, match="do not split into 4 items"):
        split_draws(np.zeros((2, 6)), 4)


# --- one fit per family, one record per option ----------------------------------------------


def position_backends(calls: list[tuple[str, int]]) -> dict[str, Backend]:
    """Backends whose P(yes | stacked cell j of J) is (j + 0.5) / J in every draw (to 1e-9)."""

    def posterior(spec: ModelSpec, counts: CellCounts, sampler: SamplerConfig) -> Any:
        calls.append((spec.key, len(counts.n)))
        cells = len(counts.n)
        rng = np.random.default_rng(0)
        shape = (sampler.chains, sampler.draws, cells)  # noise far below float32's precision
        p = (np.arange(cells) + 0.5) / cells + rng.normal(scale=1e-9, size=shape)
        return cell_posterior(p, rng)

    return fake_backends(posterior)


def test_a_joint_family_is_one_fit_and_each_option_gets_its_own_slice(tmp_path: Path) -> None:
    raw = small_wave_config(tmp_path, spec=BATTERY, model={"joint_questions": "multi"}, **PLUMBING)
    config = parse_config(raw)
    calls: list[tuple[str, int]] = []
    outcome = run_wave_inline(config, backends=position_backends(calls))

    prepared = prepare_wave(config)
    cells = prepared.layouts["DE"].n_cells
    fitted = dict(calls)
    assert len(calls) == len(prepared.specs) - 2 * (len(OPTIONS) - 1)
    assert fitted["DE/assoc_brand01/good_value"] == len(OPTIONS) * cells
    assert fitted["DE/aware_brand01/yes"] == cells
    store = ResultStore(config.output)
    fits = read_current_fits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    members = prepared.members(prepared.spec("DE/assoc_brand02/innovative"))
    total = len(members) * cells
    for item, member in enumerate(members):
        draws = fits[member.key].draws
        assert draws is not None
        expected = (item * cells + np.arange(cells) + 0.5) / total
        np.testing.assert_allclose(draws, np.broadcast_to(expected, draws.shape), atol=1e-7)
        assert fits[member.key].record.attempts == fits[members[0].key].record.attempts
    assert outcome.counts.converged == len(prepared.specs)

    calls.clear()  # nothing changed: every member is current, no fit runs
    run_wave_inline(config, backends=position_backends(calls))
    assert calls == []


def test_a_lost_joint_fit_is_recorded_failed_for_every_member(tmp_path: Path) -> None:
    raw = small_wave_config(tmp_path, spec=BATTERY, model={"joint_questions": "multi"}, **PLUMBING)
    config = parse_config(raw)
    prepared = prepare_wave(config)
    store = ResultStore(config.output)
    stage_wave(prepared, store)
    members = prepared.members(prepared.spec("DE/assoc_brand01/innovative"))

    record_lost_fit(config.output, WAVE, members[1].key, "worker process died; planted")

    for member in members:
        record = read_fit_record(store, WAVE, member.key)
        assert record is not None
        assert record.status is FitStatus.FAILED
        assert record.error == "worker process died; planted"
    plan = plan_refits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    assert prepared.fit_units(plan.to_fit).count(members[0].key) == 1

    for key in prepared.fit_units(plan.to_fit):
        fit_and_record(prepared, prepared.spec(key), store, backends=position_backends([]))
    fits = read_current_fits(store, WAVE, prepared.planned_fits(), prepared.settings_hash)
    outcome = publish_wave(prepared, fits)
    assert outcome.counts.converged == len(prepared.specs)
