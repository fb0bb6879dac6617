"""The report's tables: exact small cases for every builder (milliseconds, no store)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from misterp.reporting import tables as t

KEYS = ["DE/aware_b1/yes", "DE/consider_b1/yes", "DE/aware_b2/yes", "DE/consider_b2/yes"]


def _estimates(group: str = "all", **columns: list[object]) -> pd.DataFrame:
    market, question, option = zip(*(k.split("/") for k in KEYS), strict=True)
    frame = pd.DataFrame(
        {
            "market": market,
            "question_id": question,
            "option": option,
            "brand": [q.rsplit("_", 1)[1] for q in question],
            "target_group": group,
            "mean": [0.5, 0.25, 0.125, 0.75],
            "lower": [0.375, 0.125, 0.0625, 0.625],
            "upper": [0.625, 0.375, 0.25, 0.875],
            "interval": 0.9,
            "n": [400, 45, 20, 0],
            "base_flag": ["ok", "low_base", "very_low_base", "modelled_only"],
            "raw_mean": [0.625, 0.25, 0.0, np.nan],
            "raked_mean": [0.5625, 0.25, 0.0, np.nan],
            "raked_ess": [120.0, 30.0, 10.0, np.nan],
            "status": ["converged", "converged", "not_converged", "converged"],
        }
    )
    return frame.assign(**columns)


def _changes(flags: list[str | None], *, reference: str = "previous", group: str = "all"):
    market, question, option = zip(*(k.split("/") for k in KEYS), strict=True)
    return pd.DataFrame(
        {
            "wave": "2026-11",
            "market": market,
            "question_id": question,
            "option": option,
            "brand": [q.rsplit("_", 1)[1] for q in question],
            "target_group": group,
            "reference": reference,
            "reference_waves": "2026-10",
            "mean": [0.125, -0.0625, 0.0, 0.25],
            "lower": [0.0625, -0.125, -0.0625, 0.125],
            "upper": [0.1875, -0.03125, 0.0625, 0.375],
            "p_up": [0.99, 0.01, 0.5, 1.0],
            "p_down": [0.01, 0.99, 0.5, 0.0],
            "flag": flags,
            "comparable": [f is not None for f in flags],
            "status": "converged",
            "note": [None if f is not None else "census changed since 2026-10" for f in flags],
        }
    )


def test_the_headline_arrow_follows_the_change_flag() -> None:
    changes = pd.concat(
        [
            _changes(["up", "down", "steady", None]),
            # other references and groups never reach the headline of 'all'
            _changes(["down", "up", "up", "up"], reference="year_ago"),
            _changes(["down", "down", "down", "down"], group="women"),
        ]
    )
    headline = t.headline_table(_estimates(), changes)

    assert headline[t.DIRECTION].tolist() == ["▲", "▼", "–", ""]
    assert headline[t.FLAG].tolist() == ["up", "down", "steady", "not comparable"]
    assert headline[t.CHANGE].tolist() == [12.5, -6.2, 0.0, 25.0]  # points, one decimal
    assert headline[t.P_UP].tolist() == [0.99, 0.01, 0.5, 1.0]
    assert headline[t.NOTE].tolist() == ["", "", "", "census changed since 2026-10"]
    assert headline[t.REFERENCE_WAVES].tolist() == ["2026-10"] * 4


def test_a_first_wave_has_no_previous_wave_and_no_arrow() -> None:
    for changes in (None, _changes([None] * 4).iloc[:0]):
        headline = t.headline_table(_estimates(), changes)
        assert headline[t.FLAG].tolist() == ["no previous wave"] * 4
        assert headline[t.DIRECTION].tolist() == [""] * 4
        assert headline[t.CHANGE].isna().all()


def test_the_low_base_marker_follows_the_base_flag() -> None:
    headline = t.headline_table(_estimates(), None)
    assert headline[t.BASE_FLAG].tolist() == [
        "",
        "low base",
        "very low base",
        "model only (n = 0)",
    ]
    assert headline[t.BASE_N].tolist() == [400, 45, 20, 0]
    summary = t.headline_summary(headline)
    assert [row["base"] for row in summary] == [
        "400",
        "45 (low base)",
        "20 (very low base)",
        "0 (model only (n = 0))",
    ]


def test_the_headline_shows_the_configured_group_in_percent() -> None:
    estimates = pd.concat([_estimates(), _estimates("women", mean=[0.0625, 0.5, 0.5, 0.5])])
    changes = pd.concat([_changes(["up"] * 4), _changes(["down"] * 4, group="women")])
    headline = t.headline_table(estimates, changes, group="women")
    assert headline[t.GROUP].unique().tolist() == ["women"]
    assert headline[t.ESTIMATE].tolist() == [6.2, 50.0, 50.0, 50.0]
    assert headline[t.DIRECTION].tolist() == ["▼"] * 4
    assert headline[t.STATUS].tolist() == ["converged", "converged", "not converged", "converged"]


def _trends(waves: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "wave": waves,
            "period_start": pd.to_datetime([f"{w}-01" for w in waves]),
            "market": "DE",
            "question_id": "aware_b1",
            "option": "yes",
            "brand": "b1",
            "target_group": "all",
            "mean": 0.5,
            "q05": 0.25,
            "q95": 0.75,
            "n": 100,
            "status": "converged",
        }
    )


def test_the_trend_window_keeps_the_last_n_waves_up_to_the_wave() -> None:
    # stored out of order; a later wave (2027-01) is never in an earlier wave's window
    trends = _trends(["2026-11", "2026-09", "2027-01", "2026-10", "2026-12"])

    def window(wave: str, n: int) -> list[str]:
        return sorted(t.trends_table(trends, wave, n)[t.WAVE])

    assert window("2026-12", 2) == ["2026-11", "2026-12"]
    assert window("2026-12", 12) == ["2026-09", "2026-10", "2026-11", "2026-12"]
    assert window("2026-09", 3) == ["2026-09"]
    assert window("2027-01", 1) == ["2027-01"]
    assert window("2027-02", 3) == []  # a wave not in the trend table
    assert t.trends_table(None, "2026-12", 3).empty
    table = t.trends_table(trends, "2026-10", 2)
    assert table[t.PERIOD_START].tolist() == ["2026-09-01", "2026-10-01"]
    assert table[[t.ESTIMATE, t.Q05, t.Q95]].iloc[0].tolist() == [50.0, 25.0, 75.0]
    with pytest.raises(ValueError, match="n_waves must be at least 1"):
        t.trends_table(trends, "2026-10", 0)


def test_labels_are_used_when_present() -> None:
    labels = {"aware_b1": "Aware of B1", "consider_b1": "Would consider B1"}
    headline = t.headline_table(_estimates(), None, labels=labels)
    # a question without a label keeps its id
    assert headline[t.LABEL].tolist() == [
        "Aware of B1",
        "Would consider B1",
        "aware_b2",
        "consider_b2",
    ]
    assert headline[t.QUESTION].tolist() == ["aware_b1", "consider_b1", "aware_b2", "consider_b2"]
    assert t.LABEL not in t.headline_table(_estimates(), None)
    assert t.LABEL in t.changes_table(_changes(["up"] * 4), labels=labels)
    assert t.headline_summary(headline)[0]["kpi"] == "DE · Aware of B1"
    assert t.kpi_name("assoc_b1", "fun", "Image") == "Image · fun"


def test_associations_are_brand_questions_with_options() -> None:
    assoc = pd.DataFrame(
        {
            "market": "DE",
            "question_id": ["assoc_b1", "assoc_b1", "assoc_b2", "aware_b1", "nps"],
            "option": ["fun", "cheap", "fun", "yes", "promoter"],
            "brand": ["b1", "b1", "b2", "b1", None],
            "target_group": "all",
            "mean": [0.5, 0.25, 0.75, 0.5, 0.5],
            "lower": 0.0,
            "upper": 1.0,
            "n": 100,
            "base_flag": "ok",
            "status": "converged",
        }
    )
    table = t.association_table(pd.concat([assoc, assoc.assign(target_group="women")]))
    assert table[[t.FAMILY, t.BRAND, t.OPTION]].values.tolist() == [
        ["assoc", "b1", "fun"],
        ["assoc", "b1", "cheap"],
        ["assoc", "b2", "fun"],
    ]
    assert table[t.ESTIMATE].tolist() == [50.0, 25.0, 75.0]


def test_mrp_raw_and_raked_sit_side_by_side_in_percent() -> None:
    table = t.comparison_table(_estimates())
    assert table["MRP %"].tolist() == [50.0, 25.0, 12.5, 75.0]
    assert table[t.RAW].tolist()[:3] == [62.5, 25.0, 0.0]
    assert table[t.RAKED].tolist()[:3] == [56.2, 25.0, 0.0]
    assert np.isnan(table[t.RAW].iloc[3])  # no respondents: no sample share


def test_every_table_reads_an_older_or_missing_file() -> None:
    # estimates from before lower/upper, raw and raked shares and base flags existed
    old = _estimates().drop(
        columns=["lower", "upper", "interval", "base_flag", "raw_mean", "raked_mean", "raked_ess"]
    )
    old = old.assign(q05=0.25, q95=0.75)
    headline = t.headline_table(old, None)
    assert headline[[t.LOWER, t.UPPER]].iloc[0].tolist() == [25.0, 75.0]
    assert headline[t.BASE_FLAG].tolist() == [""] * 4
    tables = t.ReportTables(
        headline=headline,
        changes=t.changes_table(None),
        trends=t.trends_table(None, "2026-11", 12),
        funnel=t.funnel_table(None),
        competitors=t.competitors_table(None),
        associations=t.association_table(old),
        mrp_raw_raked=t.comparison_table(old),
    )
    assert list(tables.sheets()) == list(t.SHEETS)
    # audiences, comparisons: none in a wave published before their files existed
    assert [len(frame) for frame in tables.sheets().values()] == [4, 0, 0, 0, 0, 0, 4, 0, 0, 0]
    versus_rest, pairs = t.comparisons_tables(None)
    assert (len(versus_rest), len(pairs)) == (0, 0)
    assert t.P_ABOVE in pairs
    assert t.VERSUS in pairs


def test_every_estimate_and_change_gets_a_certainty_grade_from_its_half_width() -> None:
    # half-widths 12.5, 12.5, 9.4 and 12.5 points; changes 6.25, 4.7, 6.25 and 12.5 points
    certainty = t.CertaintySettings(solid=0.05, indicative=0.10)
    headline = t.headline_table(_estimates(), _changes(["up", "down", "steady", "up"]))
    assert headline[t.CERTAINTY].tolist() == [
        "too uncertain",
        "too uncertain",
        "indicative",
        "too uncertain",
    ]
    assert headline[t.CHANGE_CERTAINTY].tolist() == [
        "indicative",
        "solid",
        "indicative",
        "too uncertain",
    ]
    changes = t.changes_table(_changes(["up", "down", "steady", "up"]), certainty=certainty)
    assert changes[t.CHANGE_CERTAINTY].tolist() == headline[t.CHANGE_CERTAINTY].tolist()
    wide = t.CertaintySettings(solid=0.13, indicative=0.2)
    assert set(t.comparison_table(_estimates(), certainty=wide)[t.CERTAINTY]) == {"solid"}


def test_suppression_blanks_the_numbers_graded_too_uncertain_and_keeps_the_rest() -> None:
    suppress = t.CertaintySettings(suppress=True)
    headline = t.headline_table(
        _estimates(), _changes(["up", "down", "steady", "up"]), certainty=suppress
    )
    shown = headline[t.CERTAINTY] != "too uncertain"
    assert headline.loc[~shown, [t.ESTIMATE, t.LOWER, t.UPPER]].isna().all().all()
    assert headline.loc[shown, t.ESTIMATE].tolist() == [12.5]
    assert headline[t.CHANGE].isna().tolist() == [False, False, False, True]
    comparison = t.comparison_table(_estimates(), certainty=suppress)
    assert comparison["MRP %"].notna().tolist() == shown.tolist()


def test_the_change_tables_name_the_flag_rule_and_its_error_probability() -> None:
    changes = _changes(["up", "down", "steady", None]).assign(
        rule="fdr q=0.1", p_error=[0.01, 0.02, 0.5, np.nan]
    )
    table = t.changes_table(changes)
    assert set(table[t.FLAG_RULE]) == {"fdr q=0.1"}
    assert table[t.P_ERROR].tolist()[:3] == [0.01, 0.02, 0.5]
    assert set(t.headline_table(_estimates(), changes)[t.FLAG_RULE]) == {"fdr q=0.1"}
    # changes published before the rule was recorded: no rule to name
    assert set(t.changes_table(_changes(["up"] * 4))[t.FLAG_RULE]) == {""}
