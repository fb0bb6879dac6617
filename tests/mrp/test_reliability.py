"""Reliability beside every estimate: base flags, Kish's effective sample size of the raking."""

from __future__ import annotations

import pandas as pd
import pytest

from misterp.mrp.data import WaveData
from misterp.mrp.raking import kish_ess, sample_shares
from misterp.mrp.reliability import BaseFlag, base_flag


@pytest.mark.parametrize(
    ("n", "flag"),
    [
        (0, BaseFlag.MODELLED_ONLY),
        (1, BaseFlag.VERY_LOW_BASE),
        (29, BaseFlag.VERY_LOW_BASE),
        (30, BaseFlag.LOW_BASE),
        (49, BaseFlag.LOW_BASE),
        (50, BaseFlag.OK),
        (5000, BaseFlag.OK),
    ],
)
def test_base_flag_with_the_default_thresholds_is_strictly_below(n: int, flag: BaseFlag) -> None:
    assert base_flag(n) is flag


def test_base_flag_follows_configured_thresholds() -> None:
    assert base_flag(99, low_base=100, very_low_base=10) is BaseFlag.LOW_BASE
    assert base_flag(9, low_base=100, very_low_base=10) is BaseFlag.VERY_LOW_BASE
    # equal thresholds: there is no "low but not very low" band
    assert base_flag(20, low_base=30, very_low_base=30) is BaseFlag.VERY_LOW_BASE


def test_base_flag_values_are_the_published_strings() -> None:
    assert [f.value for f in BaseFlag] == ["ok", "low_base", "very_low_base", "modelled_only"]


def test_base_flag_rejects_thresholds_out_of_order() -> None:
    with pytest.raises(ValueError, match="must not be above low_base"):
        base_flag(10, low_base=20, very_low_base=30)


def test_kish_ess_of_equal_weights_is_the_count_and_of_unequal_weights_less() -> None:
    assert kish_ess([2.0, 2.0, 2.0]) == 3.0
    assert kish_ess([3.0, 1.0, 1.0, 1.0]) == 36.0 / 12.0  # (6)^2 / (9 + 3)
    assert kish_ess([4.0, 0.0]) == 1.0


def _wave() -> WaveData:
    people = pd.DataFrame(
        {
            "respondent_id": ["a", "b", "c", "d"],
            "market": "X",
            "g": ["f", "f", "m", "m"],
        }
    )
    # q asked to everyone; q2 asked only to a, b and c (its base)
    answers = pd.DataFrame(
        {
            "respondent_id": ["a", "b", "c", "d", "a", "b", "c"],
            "question_id": ["q", "q", "q", "q", "q2", "q2", "q2"],
            "option": "yes",
            "selected": [1, 0, 1, 0, 1, 1, 0],
        }
    )
    return WaveData(people, answers, pd.DataFrame(), pd.DataFrame(), ("g",))


def test_raked_ess_is_kish_over_the_respondents_in_the_base_and_group() -> None:
    weights = pd.Series([3.0, 1.0, 2.0, 2.0], index=["a", "b", "c", "d"])
    out = sample_shares(_wave(), weights, {"women": {"g": ["f"]}, "men": {"g": ["m"]}})
    got = out.set_index(["question_id", "target_group"])
    # q, all: weights 3, 1, 2, 2 -> 64 / 18; women: 3, 1 -> 16 / 10; men: 2, 2 -> 2
    assert got.loc[("q", "all"), "raked_ess"] == pytest.approx(64 / 18)
    assert got.loc[("q", "women"), "raked_ess"] == pytest.approx(1.6)
    assert got.loc[("q", "men"), "raked_ess"] == pytest.approx(2.0)
    # q2 in its base only: all: 3, 1, 2 -> 36 / 14; men: c alone -> 1
    assert got.loc[("q2", "all"), "raked_ess"] == pytest.approx(36 / 14)
    assert got.loc[("q2", "all"), "n"] == 3
    assert got.loc[("q2", "men"), "raked_ess"] == pytest.approx(1.0)
    assert got.loc[("q2", "all"), "raked_mean"] == pytest.approx(4 / 6)
    assert list(out.columns)[-3:] == ["raw_mean", "raked_mean", "raked_ess"]
