"""Model planning: default formulas, formula checks and the spec list of a wave."""

from __future__ import annotations

import pandas as pd
import pytest

from misterp.mrp.config import ModelConfig
from misterp.mrp.data import WaveData
from misterp.mrp.specs import (
    FormulaError,
    ModelSpec,
    check_formula,
    default_formula,
    plan_model_specs,
)

DEMOGRAPHICS = ("gender", "age")


def test_default_formula_makes_binary_demographics_common_effects_and_others_groups() -> None:
    levels = {"gender": ["f", "m"], "age": ["18-34", "35-54", "55+"]}
    assert default_formula(DEMOGRAPHICS, levels) == "p(yes, n) ~ 1 + gender + (1|age)"


def test_check_formula_accepts_configured_demographics() -> None:
    check_formula("p(yes, n) ~ 1 + gender + (1|age)", DEMOGRAPHICS, "model.formula")


def test_check_formula_rejects_an_unknown_column_with_a_did_you_mean_hint() -> None:
    with pytest.raises(FormulaError, match=r"'gendr' \(did you mean 'gender'\?\)") as info:
        check_formula("p(yes, n) ~ 1 + gendr + (1|age)", DEMOGRAPHICS, "model.formula")
    assert "model.formula" in str(info.value)


def test_check_formula_rejects_a_response_other_than_yes_out_of_n() -> None:
    with pytest.raises(FormulaError, match=r"must model the binomial cell response"):
        check_formula("y ~ 1 + gender", DEMOGRAPHICS, "model.formula")


def test_check_formula_rejects_a_binomial_response_over_other_columns() -> None:
    with pytest.raises(FormulaError, match=r"p\(yes, n\) ~"):
        check_formula("p(yes, trials) ~ 1 + gender", DEMOGRAPHICS, "model.formula")


def tiny_wave() -> WaveData:
    """``a_consider`` (asked to those with ``z_aware=yes``) sorts before its base question."""
    respondents = pd.DataFrame(
        {
            "respondent_id": ["r1", "r2", "r3"],
            "market": ["X", "X", "X"],
            "gender": ["f", "m", "f"],
            "age": ["young", "old", "mid"],
        }
    )
    answers = pd.DataFrame(
        [
            ("r1", "z_aware", "yes", 1),
            ("r2", "z_aware", "yes", 0),
            ("r3", "z_aware", "yes", 1),
            ("r1", "a_consider", "quality", 1),
            ("r1", "a_consider", "price", 0),
            ("r3", "a_consider", "price", 1),
        ],
        columns=["respondent_id", "question_id", "option", "selected"],
    ).astype({"selected": "int8"})
    poststrat = pd.DataFrame(
        {
            "market": "X",
            "gender": ["f", "m", "f"],
            "age": ["young", "old", "mid"],
            "population": [1.0, 2.0, 3.0],
        }
    )
    questions = pd.DataFrame(
        {
            "question_id": ["z_aware", "a_consider"],
            "market": ["X", "X"],
            "brand": ["b1", "b1"],
            "kind": ["single", "multi"],
            "base": [None, "z_aware=yes"],
        }
    )
    return WaveData(respondents, answers, poststrat, questions, DEMOGRAPHICS)


def test_plan_model_specs_puts_unconditional_specs_before_conditional_ones() -> None:
    specs = plan_model_specs(tiny_wave(), ModelConfig())
    assert [s.key for s in specs] == [
        "X/z_aware/yes",
        "X/a_consider/price",
        "X/a_consider/quality",
    ]


def test_plan_model_specs_sets_the_base_of_a_conditional_question() -> None:
    specs = {s.key: s for s in plan_model_specs(tiny_wave(), ModelConfig())}
    assert specs["X/z_aware/yes"].base_question is None
    assert specs["X/z_aware/yes"].base_option is None
    assert specs["X/a_consider/price"].base_question == "z_aware"
    assert specs["X/a_consider/price"].base_option == "yes"
    assert specs["X/a_consider/price"].base_key == "X/z_aware/yes"


def test_plan_model_specs_carries_question_metadata_and_the_default_formula() -> None:
    specs = {s.key: s for s in plan_model_specs(tiny_wave(), ModelConfig())}
    spec = specs["X/a_consider/quality"]
    assert spec == ModelSpec(
        market="X",
        question_id="a_consider",
        option="quality",
        formula="p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)",  # the default interaction
        brand="b1",
        base_question="z_aware",
        base_option="yes",
    )
    main_effects = plan_model_specs(tiny_wave(), ModelConfig(interactions=[]))
    assert {s.formula for s in main_effects} == {"p(yes, n) ~ 1 + gender + (1|age)"}


def test_plan_model_specs_uses_a_per_question_formula_override() -> None:
    model = ModelConfig(formulas={"a_consider": "p(yes, n) ~ 1 + gender"})
    specs = {s.key: s for s in plan_model_specs(tiny_wave(), model)}
    assert specs["X/a_consider/price"].formula == "p(yes, n) ~ 1 + gender"
    assert specs["X/z_aware/yes"].formula == "p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)"


def test_plan_model_specs_rejects_an_override_for_an_unknown_question() -> None:
    model = ModelConfig(formulas={"nope": "p(yes, n) ~ 1 + gender"})
    with pytest.raises(FormulaError, match="names question 'nope'"):
        plan_model_specs(tiny_wave(), model)


def test_model_spec_key_is_market_question_option() -> None:
    assert ModelSpec("DE", "aware_b1", "yes", "f").key == "DE/aware_b1/yes"


def test_the_spec_hash_changes_with_the_model_not_with_its_labels() -> None:
    spec = ModelSpec("X", "a_consider", "price", "p(yes, n) ~ 1 + gender", brand="b1")
    relabelled = ModelSpec("X", "a_consider", "price", "p(yes, n) ~ 1 + gender", brand="b9")
    other_formula = ModelSpec("X", "a_consider", "price", "p(yes, n) ~ 1", brand="b1")
    other_base = ModelSpec(
        "X", "a_consider", "price", "p(yes, n) ~ 1 + gender", "b1", "z_aware", "yes"
    )
    assert relabelled.spec_hash == spec.spec_hash
    assert len({spec.spec_hash, other_formula.spec_hash, other_base.spec_hash}) == 3


def test_configured_interactions_join_the_default_formula_and_unknown_ones_are_refused() -> None:
    model = ModelConfig.model_validate({"interactions": [["age", "gender"]]})
    specs = plan_model_specs(tiny_wave(), model)
    assert {s.formula for s in specs} == {"p(yes, n) ~ 1 + gender + (1|age) + (1|age:gender)"}

    typo = ModelConfig.model_validate({"interactions": [["age", "gendr"]]})
    with pytest.raises(FormulaError, match=r"'gendr' \(did you mean 'gender'\?\)"):
        plan_model_specs(tiny_wave(), typo)
