"""Audiences beyond the census: profile variables, their models and synthetic poststratification.

The known truth is a hand-built wave whose panel is biased (as many men as women, where the
census has three men per woman) and whose profile (``user``) depends on the census cell and
shifts awareness. Every cell has 1,000+ respondents and the fits are the conjugate posterior
of each cell (``support.no_mcmc_backends``), so a correct synthetic poststratification lands
on the population truth, while the raw share among the panel's users does not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from misterp.config import ConfigError
from misterp.mrp.config import ProfileMissing, parse_config
from misterp.mrp.prepare import prepare_wave
from misterp.mrp.profiles import MISSING_PROFILE_LEVEL, with_missing_profiles
from misterp.mrp.validation import InputValidationError, read_wave
from misterp.pipeline.wave import run_wave_inline
from support import PLUMBING, WAVE, no_mcmc_backends

#: Census: 100 women and 300 men.
CENSUS = {"f": 100.0, "m": 300.0}
#: P(user | gender) and P(aware | gender, user).
P_USER = {"f": 0.8, "m": 0.2}
P_AWARE = {("f", "yes"): 0.9, ("f", "no"): 0.5, ("m", "yes"): 0.6, ("m", "no"): 0.1}
#: Respondents per gender in the panel (biased: as many women as men).
PANEL = 2000


def _truth() -> dict[str, float]:
    users = {g: CENSUS[g] * P_USER[g] for g in CENSUS}
    others = {g: CENSUS[g] * (1 - P_USER[g]) for g in CENSUS}
    aware_users = sum(users[g] * P_AWARE[(g, "yes")] for g in CENSUS)
    aware_all = aware_users + sum(others[g] * P_AWARE[(g, "no")] for g in CENSUS)
    return {
        "users_aware": aware_users / sum(users.values()),  # 108 / 140
        "all_aware": aware_all / sum(CENSUS.values()),  # 142 / 400
        "users_size": sum(users.values()) / sum(CENSUS.values()),  # 140 / 400
        "women_users_aware": P_AWARE[("f", "yes")],
    }


def _wave(
    folder: Path,
    market_levels: dict[str, str] | None = None,
    panel_users: dict[str, float] | None = None,
) -> None:
    """Write the wave: exact proportions, no sampling noise; one market DE (FR if asked).

    ``panel_users``: P(user | gender) in the panel when it is not the population's (a panel
    that over-recruits users within a cell).
    """
    people, answers = [], []
    markets = ["DE", *(market_levels or {})]
    for market in markets:
        yes_level = (market_levels or {}).get(market, "yes")
        for gender in ("f", "m"):
            n_users = int(PANEL * (panel_users or P_USER)[gender])
            for i in range(PANEL):
                user = "yes" if i < n_users else "no"
                rid = f"{market}-{gender}-{i}"
                people.append((rid, market, gender, yes_level if user == "yes" else "no"))
                within = i if user == "yes" else i - n_users
                size = n_users if user == "yes" else PANEL - n_users
                aware = int(within < round(size * P_AWARE[(gender, user)]))
                answers.append((rid, "aware_b1", "yes", aware))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(people, columns=["respondent_id", "market", "gender", "user"]).to_csv(
        folder / "respondents.csv", index=False
    )
    pd.DataFrame(answers, columns=["respondent_id", "question_id", "option", "selected"]).to_csv(
        folder / "answers.csv", index=False
    )
    census = [(m, g, CENSUS[g]) for m in markets for g in ("f", "m")]
    pd.DataFrame(census, columns=["market", "gender", "population"]).to_csv(
        folder / "poststrat.csv", index=False
    )


def _config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "input": str(tmp_path / "input"),
        "output": str(tmp_path / "results"),
        "wave": WAVE,
        "demographics": ["gender"],
        "profiles": ["user"],
        "target_groups": {
            "users": {"user": ["yes"]},
            "women_users": {"gender": ["f"], "user": ["yes"]},
        },
        **PLUMBING,
        "sampler": {**PLUMBING["sampler"], "draws": 400, "stored_draws": 400},
    } | extra


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    tmp_path = tmp_path_factory.mktemp("profiles")
    _wave(tmp_path / "input")
    outcome = run_wave_inline(parse_config(_config(tmp_path)), backends=no_mcmc_backends())
    wave = tmp_path / "results" / WAVE
    return (
        pd.read_parquet(wave / "estimates.parquet"),
        pd.read_parquet(wave / "audiences.parquet"),
        outcome,
    )


def _estimate(estimates: pd.DataFrame, group: str) -> pd.Series:
    rows = estimates[
        (estimates["question_id"] == "aware_b1") & (estimates["target_group"] == group)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_an_audience_on_a_profile_lands_on_the_population_truth(
    published: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    estimates, _, _ = published
    truth = _truth()
    users = _estimate(estimates, "users")
    assert users["mean"] == pytest.approx(truth["users_aware"], abs=0.01)
    assert users["lower"] < truth["users_aware"] < users["upper"]
    # the panel's own users are mostly women: their raw share is far off the truth
    assert users["raw_mean"] == pytest.approx(0.84, abs=1e-9)
    assert _estimate(estimates, "all")["mean"] == pytest.approx(truth["all_aware"], abs=0.01)
    assert _estimate(estimates, "women_users")["mean"] == pytest.approx(
        truth["women_users_aware"], abs=0.01
    )


def test_each_audience_gets_its_size_with_an_interval(
    published: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    _, audiences, _ = published
    sizes = audiences.set_index("target_group")
    truth = _truth()["users_size"]
    assert sizes.loc["users", "mean"] == pytest.approx(truth, abs=0.01)
    assert sizes.loc["users", "lower"] < truth < sizes.loc["users", "upper"]
    assert sizes.loc["users", "profiles"] == "user"
    assert sizes.loc["women_users", "mean"] == pytest.approx(80 / 400, abs=0.01)
    # a census group's size is the census's, without uncertainty
    assert sizes.loc["all", "mean"] == 1.0
    assert sizes.loc["all", "sd"] == 0.0


def test_the_profile_model_is_a_fit_unit_with_a_record_but_no_estimate_row(
    published: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    estimates, _, outcome = published
    keys = [model.key for model in outcome.manifest.models]
    assert "DE/profile.user/yes" in keys
    assert not estimates["question_id"].str.startswith("profile.").any()


def test_a_question_model_gets_the_profile_as_an_effect_and_the_profile_model_does_not(
    tmp_path: Path,
) -> None:
    _wave(tmp_path / "input")
    prepared = prepare_wave(parse_config(_config(tmp_path)))
    formulas = {spec.key: spec.formula for spec in prepared.specs}
    assert formulas["DE/aware_b1/yes"] == "p(yes, n) ~ 1 + gender + user"
    assert formulas["DE/profile.user/yes"] == "p(yes, n) ~ 1 + gender"
    # off: an audience only reweights census cells
    prepared = prepare_wave(parse_config(_config(tmp_path, profile_settings={"predictor": False})))
    assert prepared.spec("DE/aware_b1/yes").formula == "p(yes, n) ~ 1 + gender"
    # the profile model's cells are the census cells: women and men
    unit = prepared.fit_unit(prepared.spec("DE/profile.user/yes"))
    assert unit.layout.n_cells == 2
    assert unit.counts.n.tolist() == [PANEL, PANEL]
    assert unit.counts.yes.tolist() == [1600, 400]


def test_a_blank_profile_is_its_own_level_or_left_out_as_the_config_says(tmp_path: Path) -> None:
    _wave(tmp_path / "input")
    people = pd.read_csv(tmp_path / "input" / "respondents.csv", dtype=str)
    people.loc[:9, "user"] = None
    people.to_csv(tmp_path / "input" / "respondents.csv", index=False)
    wave = read_wave(str(tmp_path / "input"), ["gender"], profiles=["user"])
    assert wave.respondents["user"].isna().sum() == 10
    own = with_missing_profiles(wave, ProfileMissing.OWN_LEVEL)
    assert (own.respondents["user"] == MISSING_PROFILE_LEVEL).sum() == 10
    assert (
        with_missing_profiles(wave, ProfileMissing.AT_RANDOM).respondents["user"].isna().sum() == 10
    )

    at_random = prepare_wave(
        parse_config(_config(tmp_path, profile_settings={"missing": "at_random"}))
    )
    assert (
        at_random.fit_unit(at_random.spec("DE/profile.user/yes")).counts.n.sum() == 2 * PANEL - 10
    )
    own_level = prepare_wave(parse_config(_config(tmp_path)))
    # three levels (missing, no, yes): one model per level
    assert sorted(s.option for s in own_level.specs if s.profile) == ["missing", "no", "yes"]


# -- bad input --------------------------------------------------------------------------------


def _problems(tmp_path: Path) -> list[str]:
    with pytest.raises(InputValidationError) as caught:
        read_wave(str(tmp_path / "input"), ["gender"], profiles=["user"])
    return [str(problem) for problem in caught.value.report.problems]


def test_a_declared_profile_absent_from_the_respondents_is_named(tmp_path: Path) -> None:
    _wave(tmp_path / "input")
    people = pd.read_csv(tmp_path / "input" / "respondents.csv").drop(columns="user")
    people.to_csv(tmp_path / "input" / "respondents.csv", index=False)
    found = _problems(tmp_path)
    assert any(
        p.startswith("respondents.csv, column 'user': missing column")
        and "remove 'user' from profiles" in p
        for p in found
    ), found


def test_a_profile_with_one_level_in_a_market_is_named(tmp_path: Path) -> None:
    _wave(tmp_path / "input")
    people = pd.read_csv(tmp_path / "input" / "respondents.csv")
    people["user"] = "yes"
    people.to_csv(tmp_path / "input" / "respondents.csv", index=False)
    found = _problems(tmp_path)
    assert any(
        "profile 'user' has one level 'yes' in market DE: an audience needs two or more" in p
        for p in found
    ), found


def test_a_level_spelt_another_way_in_one_market_is_named(tmp_path: Path) -> None:
    _wave(tmp_path / "input", market_levels={"FR": "Yes"})
    found = _problems(tmp_path)
    assert any(
        "level 'Yes' of profile 'user' in market FR looks like 'yes' of the other markets" in p
        for p in found
    ), found


def test_a_target_group_on_an_undeclared_column_names_profiles(tmp_path: Path) -> None:
    raw = _config(tmp_path, profiles=[])
    with pytest.raises(ConfigError, match=r"neither a demographic .* nor a profile"):
        parse_config(raw)


def test_a_target_group_on_a_level_nobody_answered_is_refused(tmp_path: Path) -> None:
    _wave(tmp_path / "input")
    raw = _config(tmp_path, target_groups={"users": {"user": ["yse"]}})
    with pytest.raises(ConfigError, match="level 'yse' is not in the survey's answers"):
        prepare_wave(parse_config(raw))


def test_profile_weights_carry_the_draws_of_the_profile_model() -> None:
    """Draw d of an estimate uses draw d of the profile model: exact small case."""
    from misterp.mrp.cells import MarketCells
    from misterp.mrp.poststratify import poststratify
    from misterp.mrp.profiles import profile_weights
    from misterp.mrp.specs import ModelSpec

    frame = pd.DataFrame({"g": ["f", "f"], "user": ["no", "yes"], "population": [10.0, 10.0]})
    masks = {"all": np.array([True, True]), "users": np.array([False, True])}
    layout = MarketCells("X", frame, ("g", "user"), masks, profiles=("user",))
    spec = ModelSpec("X", "profile.user", "yes", "f", profile="user")
    weights = profile_weights(layout, [spec], {spec.key: np.array([[0.25], [0.75]])})
    aware = np.array([[0.2, 0.6], [0.2, 0.6]])  # P(aware | no), P(aware | yes), two draws
    out = poststratify(aware, layout.population, layout.masks, weights)
    # draw 1: 0.75 * 0.2 + 0.25 * 0.6 = 0.3; draw 2: 0.25 * 0.2 + 0.75 * 0.6 = 0.5
    assert out["all"].tolist() == pytest.approx([0.3, 0.5])
    assert out["users"].tolist() == pytest.approx([0.6, 0.6])


def test_tracking_and_the_report_take_an_audience_like_any_target_group(
    published: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    _, _, outcome = published
    assert outcome.tracking is not None
    assert outcome.tracking.status != "failed", outcome.tracking
    assert outcome.report is not None
    assert outcome.report.status != "failed", outcome.report


def test_the_report_shows_each_audience_size_and_exports_it(
    published: tuple[pd.DataFrame, pd.DataFrame, Any],
) -> None:
    _, audiences, outcome = published
    report = Path(outcome.output_uri) / "report"
    exported = pd.read_csv(report / "audiences.csv", encoding="utf-8-sig")
    users = exported.set_index("Group").loc["users"]
    expected = round(float(audiences.set_index("target_group").loc["users", "mean"]) * 100, 1)
    assert users["Share %"] == expected
    assert users["Profiles"] == "user"
    page = (report / "index.html").read_text()
    assert "Audience sizes" in page
    assert f"<b>{expected:.1f}%</b>" in page


# -- known margins of a profile ------------------------------------------------------------------


def _margins(folder: Path, rows: list[tuple[str, str, str, object]]) -> None:
    pd.DataFrame(rows, columns=["market", "profile", "level", "share"]).to_csv(
        folder / "profile_margins.csv", index=False
    )


def test_known_margins_correct_a_panel_that_over_recruits_users(tmp_path: Path) -> None:
    """The assumption fails (users over-recruited within cells); the official share fixes it."""
    over = {"f": 0.9, "m": 0.4}  # the panel's users: 1,800 of 2,000 women, 800 of 2,000 men
    truth = _truth()["users_size"]  # 0.35
    _wave(tmp_path / "plain" / "input", panel_users=over)
    raw = _config(tmp_path / "plain")
    run_wave_inline(parse_config(raw), backends=no_mcmc_backends())
    plain = pd.read_parquet(tmp_path / "plain" / "results" / WAVE / "audiences.parquet")
    assert plain.set_index("target_group").loc["users", "mean"] > truth + 0.15  # 0.525

    _wave(tmp_path / "raked" / "input", panel_users=over)
    _margins(
        tmp_path / "raked" / "input", [("DE", "user", "yes", 0.35), ("DE", "user", "no", 0.65)]
    )
    run_wave_inline(parse_config(_config(tmp_path / "raked")), backends=no_mcmc_backends())
    wave = tmp_path / "raked" / "results" / WAVE
    sizes = pd.read_parquet(wave / "audiences.parquet").set_index("target_group")
    assert sizes.loc["users", "mean"] == pytest.approx(truth, abs=1e-6)
    assert sizes.loc["users", "sd"] == pytest.approx(0.0, abs=1e-6)  # pinned in every draw
    assert "raked to its known shares" in sizes.loc["users", "note"]
    # the users' awareness moves toward the truth: fewer women among them than the panel says
    users = _estimate(pd.read_parquet(wave / "estimates.parquet"), "users")
    before = _estimate(
        pd.read_parquet(tmp_path / "plain" / "results" / WAVE / "estimates.parquet"), "users"
    )
    assert abs(users["mean"] - _truth()["users_aware"]) < abs(
        before["mean"] - _truth()["users_aware"]
    )
    assert "raked to its known shares" in users["note"]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [("DE", "user", "yes", 0.3), ("DE", "user", "no", 0.6)],
            "the shares of profile 'user' in market DE sum to 0.9000, not 1",
        ),
        (
            [("DE", "user", "Yes", 0.35), ("DE", "user", "no", 0.65)],
            "'Yes' not a level of profile 'user' in market DE (answered: no, yes)",
        ),
        ([("DE", "usr", "yes", 1.0)], "'usr' not among the profiles user"),
        ([("DE", "user", "yes", 1.5)], "share must be a number from 0 to 1"),
        ([("FR", "user", "yes", 1.0)], "market 'FR' has no respondents"),
    ],
)
def test_bad_known_margins_are_named(
    tmp_path: Path, rows: list[tuple[str, str, str, object]], expected: str
) -> None:
    _wave(tmp_path / "input")
    _margins(tmp_path / "input", rows)
    found = _problems(tmp_path)
    assert any(p.startswith("profile_margins.csv") and expected in p for p in found), found
