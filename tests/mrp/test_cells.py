"""Cell layout and binomial counts, checked against counts made by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from misterp.mrp.cells import aggregate_cells, build_market_cells, group_masks
from misterp.mrp.data import WaveData
from misterp.mrp.specs import ModelSpec

FORMULA = "p(yes, n) ~ 1 + age + gender"


def tiny_wave() -> WaveData:
    """Five respondents in X (one in a cell the census lacks) and one in Y.

    Layout of X, sorted by (age, gender): 0 old/f (survey only), 1 old/m, 2 young/f, 3 young/m.
    ``consider`` is asked only to those aware (a, c, d, f).
    """
    respondents = pd.DataFrame(
        {
            "respondent_id": ["a", "b", "c", "d", "e", "f"],
            "market": ["X", "X", "X", "X", "X", "Y"],
            "age": ["young", "young", "old", "old", "young", "young"],
            "gender": ["f", "f", "m", "f", "m", "f"],
        }
    )
    answers = pd.DataFrame(
        [
            ("a", "aware", "yes", 1),
            ("b", "aware", "yes", 0),
            ("c", "aware", "yes", 1),
            ("d", "aware", "yes", 1),
            ("e", "aware", "yes", 0),
            ("f", "aware", "yes", 1),
            ("a", "consider", "price", 1),
            ("c", "consider", "price", 0),
            ("d", "consider", "price", 1),
            ("f", "consider", "price", 0),
        ],
        columns=["respondent_id", "question_id", "option", "selected"],
    ).astype({"selected": "int8"})
    poststrat = pd.DataFrame(
        {
            "market": ["X", "X", "X", "Y"],
            "age": ["young", "young", "old", "young"],
            "gender": ["f", "m", "m", "f"],
            "population": [10.0, 20.0, 30.0, 5.0],
        }
    )
    questions = pd.DataFrame(
        {
            "question_id": ["aware", "consider", "aware", "consider"],
            "market": ["X", "X", "Y", "Y"],
            "brand": ["b1"] * 4,
            "kind": ["single", "multi", "single", "multi"],
            "base": [None, "aware=yes", None, "aware=yes"],
        }
    )
    return WaveData(respondents, answers, poststrat, questions, ("age", "gender"))


def test_build_market_cells_keeps_a_survey_only_cell_with_population_zero() -> None:
    layouts = build_market_cells(tiny_wave(), {})
    frame = layouts["X"].frame
    assert frame["age"].astype(str).tolist() == ["old", "old", "young", "young"]
    assert frame["gender"].astype(str).tolist() == ["f", "m", "f", "m"]
    assert layouts["X"].population.tolist() == [0.0, 30.0, 10.0, 20.0]


def test_build_market_cells_builds_one_layout_per_market_from_its_own_census() -> None:
    layouts = build_market_cells(tiny_wave(), {})
    assert sorted(layouts) == ["X", "Y"]
    assert layouts["Y"].n_cells == 1
    assert layouts["Y"].population.tolist() == [5.0]


def test_build_market_cells_attaches_target_group_masks_with_all_first() -> None:
    layouts = build_market_cells(tiny_wave(), {"women": {"gender": ["f"]}})
    masks = layouts["X"].masks
    assert list(masks) == ["all", "women"]
    assert masks["all"].tolist() == [True, True, True, True]
    assert masks["women"].tolist() == [True, False, True, False]


def test_aggregate_cells_counts_an_unconditional_question_by_hand() -> None:
    wave = tiny_wave()
    layouts = build_market_cells(wave, {})
    counts = aggregate_cells(wave, layouts, [ModelSpec("X", "aware", "yes", FORMULA)])
    # old/f: d=1; old/m: c=1; young/f: a=1, b=0; young/m: e=0
    assert counts["X/aware/yes"].yes.tolist() == [1, 1, 1, 0]
    assert counts["X/aware/yes"].n.tolist() == [1, 1, 2, 1]


def test_aggregate_cells_counts_a_conditional_question_only_over_those_asked() -> None:
    wave = tiny_wave()
    layouts = build_market_cells(wave, {})
    spec = ModelSpec("X", "consider", "price", FORMULA, base_question="aware", base_option="yes")
    counts = aggregate_cells(wave, layouts, [spec])
    # asked: d (old/f) 1, c (old/m) 0, a (young/f) 1; nobody young/m was asked
    assert counts["X/consider/price"].yes.tolist() == [1, 0, 1, 0]
    assert counts["X/consider/price"].n.tolist() == [1, 1, 1, 0]


def test_aggregate_cells_keeps_markets_apart() -> None:
    wave = tiny_wave()
    layouts = build_market_cells(wave, {})
    specs = [ModelSpec("Y", "aware", "yes", FORMULA), ModelSpec("Y", "consider", "price", FORMULA)]
    counts = aggregate_cells(wave, layouts, specs)
    assert counts["Y/aware/yes"].yes.tolist() == [1]
    assert counts["Y/aware/yes"].n.tolist() == [1]
    assert counts["Y/consider/price"].yes.tolist() == [0]
    assert counts["Y/consider/price"].n.tolist() == [1]


def test_aggregate_cells_drops_no_respondent_of_a_survey_only_cell() -> None:
    wave = tiny_wave()
    layouts = build_market_cells(wave, {})
    counts = aggregate_cells(wave, layouts, [ModelSpec("X", "aware", "yes", FORMULA)])
    assert int(counts["X/aware/yes"].n.sum()) == 5


def test_aggregate_cells_gives_zero_counts_for_a_spec_without_answers() -> None:
    wave = tiny_wave()
    layouts = build_market_cells(wave, {})
    counts = aggregate_cells(wave, layouts, [ModelSpec("X", "aware", "no", FORMULA)])
    assert counts["X/aware/no"].yes.tolist() == [0, 0, 0, 0]
    assert counts["X/aware/no"].n.tolist() == [0, 0, 0, 0]


def test_group_masks_requires_every_column_of_a_two_column_group() -> None:
    frame = pd.DataFrame({"age": ["old", "old", "young", "young"], "gender": ["f", "m", "f", "m"]})
    masks = group_masks(
        frame,
        {
            "young_women": {"age": ["young"], "gender": ["f"]},
            "men_any_age": {"age": ["old", "young"], "gender": ["m"]},
        },
    )
    assert list(masks) == ["all", "young_women", "men_any_age"]
    assert masks["young_women"].tolist() == [False, False, True, False]
    assert masks["men_any_age"].tolist() == [False, True, False, True]
    assert masks["all"].dtype == np.bool_
