"""The demo tracker's plan and its scoring against the known truth, for ``misterp demo``.

The demo simulates consecutive monthly waves of one population in which a few estimates move
by declared amounts, runs them like real waves and compares the published changes with the
exact true ones. Kept apart from the command so that the scoring is a pure function with a
hand-made test; nothing here imports Prefect.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from misterp.mrp.simulate import ProfileTruth, TrueChange

__all__ = [
    "DEMO_AUDIENCE",
    "DEMO_CHANGES",
    "DEMO_PROFILE",
    "SHOWN_GROUPS",
    "ChangeScore",
    "audience_sizes",
    "audience_table",
    "demo_wave_ids",
    "plan_demo_changes",
    "rule_in_force",
    "score_changes",
    "summarise_scores",
]

#: The demo's declared changes as (question prefix, brand index, target group, size): the
#: first brand's awareness among young women and the second brand's consideration overall.
#: Sized for 1,500 respondents per market: a change confined to women_18_34 is an interaction
#: the main-effects model lacks, so partial pooling spreads it over the gender and age effects
#: and shows it at a third to a half of its size; it needs to be the larger one to be seen.
DEMO_CHANGES: tuple[tuple[str, int, str, float], ...] = (
    ("aware", 0, "women_18_34", 0.15),
    ("consider", 1, "all", 0.08),
)

#: Target groups whose changes the demo prints (it scores them all).
SHOWN_GROUPS = ("all", "women_18_34")

#: The demo's audience beyond the census: category users, a profile the census does not count.
DEMO_AUDIENCE = "category_users"

#: The demo's simulated profile: category users (35% of the population, more of them in some
#: cells), more aware and more considering than non-users; one audience on it.
DEMO_PROFILE = ProfileTruth(audiences={DEMO_AUDIENCE: {"category_user": ["yes"]}})

#: A true change below this is no change: unchanged truth is bitwise equal, this only
#: absorbs the subtraction.
_ZERO = 1e-12

_KEYS = ["wave", "market", "question_id", "option", "target_group"]


def demo_wave_ids(n_waves: int, first: str = "2026-09") -> list[str]:
    """``n_waves`` consecutive months from ``first`` (``YYYY-MM``): wave ids tracking can order.

    Examples
    --------
    >>> demo_wave_ids(3, "2026-11")
    ['2026-11', '2026-12', '2027-01']
    """
    if n_waves < 1:
        raise ValueError(f"n_waves must be at least 1, got {n_waves}")
    start = dt.date.fromisoformat(f"{first}-01")
    months = [start.year * 12 + start.month - 1 + k for k in range(n_waves)]
    return [f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months]


def audience_table(estimates: pd.DataFrame, truth: pd.DataFrame, audience: str) -> pd.DataFrame:
    """One audience's estimates beside its truth and the two classical baselines.

    Columns: ``market``, ``question_id``, ``option``, ``true_value``, ``mean``, ``q05``,
    ``q95``, ``covered`` (the published interval holds the truth), ``raked_mean`` (raking
    within the audience), ``raw_mean``, ``n``.

    Examples
    --------
    >>> keys = {"market": ["DE"], "question_id": ["aware_b1"], "option": ["yes"],
    ...         "target_group": ["users"]}
    >>> estimates = pd.DataFrame(keys | {"mean": [0.7], "q05": [0.6], "q95": [0.8],
    ...                          "lower": [0.6], "upper": [0.8], "raked_mean": [0.75],
    ...                          "raw_mean": [0.8], "n": [300]})
    >>> truth = pd.DataFrame(keys | {"true_value": [0.65]})
    >>> audience_table(estimates, truth, "users")[["true_value", "mean", "covered"]].values
    array([[0.65, 0.7, True]], dtype=object)
    """
    keys = ["market", "question_id", "option", "target_group"]
    rows = estimates[estimates["target_group"] == audience].merge(truth, on=keys, how="left")
    rows["covered"] = (rows["lower"] <= rows["true_value"]) & (rows["true_value"] <= rows["upper"])
    columns = ["market", "question_id", "option", "true_value", "mean", "q05", "q95"]
    return rows[[*columns, "covered", "raked_mean", "raw_mean", "n"]].reset_index(drop=True)


def audience_sizes(sizes: pd.DataFrame, truth: pd.DataFrame, audience: str) -> list[str]:
    """One line per market: the audience's estimated population share beside the true one.

    Examples
    --------
    >>> sizes = pd.DataFrame({"market": ["DE"], "target_group": ["users"], "mean": [0.342],
    ...                       "lower": [0.31], "upper": [0.37], "interval": [0.9]})
    >>> truth = pd.DataFrame({"market": ["DE"], "target_group": ["users"], "true_share": [0.35]})
    >>> audience_sizes(sizes, truth, "users")
    ['DE: users are 34.2% of the population (90% interval 31.0-37.0%), truth 35.0%']
    """
    rows = sizes[sizes["target_group"] == audience].merge(
        truth, on=["market", "target_group"], how="left"
    )
    lines = []
    for row in rows.to_dict("records"):
        mean, lower, upper = float(row["mean"]), float(row["lower"]), float(row["upper"])
        lines.append(
            f"{row['market']}: {audience} are {mean:.1%} of the population "
            f"({float(row['interval']):.0%} interval {lower * 100:.1f}-{upper:.1%}), "
            f"truth {float(row['true_share']):.1%}"
        )
    return lines


def plan_demo_changes(
    base_truth: pd.DataFrame, brands: Sequence[str], wave: str
) -> list[TrueChange]:
    """The declared changes of the demo, taking effect at ``wave``, one per market.

    Each moves towards 50% from the market's true share before the change, so any seed and
    brand count gives shares inside (0, 1). Changes naming a brand the demo does not have
    are left out.

    Parameters
    ----------
    base_truth
        Truth of the wave before the change (``SimulatedWave.truth`` layout).
    brands
        The demo's brand names, in order.
    wave
        The wave the changes take effect at.
    """
    share = base_truth.set_index(["market", "question_id", "option", "target_group"])
    changes = []
    for prefix, index, group, size in DEMO_CHANGES:
        if index >= len(brands):
            continue
        question = f"{prefix}_{brands[index]}"
        for market in share.index.unique("market"):
            now = float(share.loc[(market, question, "yes", group), "true_value"])
            delta = size if now < 0.5 else -size
            changes.append(TrueChange(question, "yes", group, delta, wave, market=market))
    return changes


def score_changes(changes: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Join published wave-on-wave changes with the true changes they estimate.

    Keeps the comparable ``previous`` rows and adds ``true_change``, ``declared``, ``covered``
    (the change interval holds the true change) and ``kind``: ``declared`` (a declared change),
    ``unchanged`` (true change exactly 0) or ``induced`` (moved by a declared change elsewhere:
    a group inside ``all``, the base of an association question).

    Parameters
    ----------
    changes
        Rows of ``changes.parquet`` (any waves).
    truth
        ``SimulatedSeries.true_changes``: ``wave``, ``reference_wave``, the estimate keys,
        ``true_change`` and ``declared``.

    Returns
    -------
    pandas.DataFrame
        One row per comparable previous-wave change that has a true change.
    """
    rows = changes[(changes["reference"] == "previous") & changes["comparable"].astype(bool)]
    true = truth[[*_KEYS, "reference_wave", "true_change", "declared"]].rename(
        columns={"reference_wave": "reference_waves"}
    )
    scored = rows.merge(true, on=[*_KEYS, "reference_waves"], how="inner", validate="one_to_one")
    scored["covered"] = (scored["lower"] <= scored["true_change"]) & (
        scored["true_change"] <= scored["upper"]
    )
    scored["kind"] = "induced"
    scored.loc[scored["true_change"].abs() < _ZERO, "kind"] = "unchanged"
    scored.loc[scored["declared"].astype(bool), "kind"] = "declared"
    return scored.reset_index(drop=True)


def rule_in_force(changes: pd.DataFrame) -> str:
    """The flag rule the changes were flagged under, as ``changes.parquet`` names it.

    >>> rule_in_force(pd.DataFrame({"rule": ["fdr q=0.1", "fdr q=0.1"]}))
    'fdr q=0.1 (false discovery rate over the wave)'
    >>> rule_in_force(pd.DataFrame({"flag": ["up"]}))
    'not recorded'
    """
    rules = sorted(set(changes["rule"].dropna())) if "rule" in changes else []
    if not rules:
        return "not recorded"
    words = {"fdr": "false discovery rate over the wave", "per_estimate": "each change alone"}
    return ", ".join(f"{r} ({words.get(r.split()[0], r)})" for r in rules)


@dataclass(frozen=True)
class ChangeScore:
    """How well one set of scored changes matches the truth."""

    n_declared: int
    n_detected: int  # declared changes flagged in their true direction
    n_unchanged: int
    n_false_alarms: int  # unchanged estimates flagged up or down
    n_compared: int
    n_covered: int  # change intervals that hold the true change

    def line(self) -> str:
        """One line for a person: detected changes, false alarms, interval coverage."""
        coverage = f"{self.n_covered / self.n_compared:.0%}" if self.n_compared else "-"
        return (
            f"true changes flagged {self.n_detected} of {self.n_declared}; false alarms "
            f"{self.n_false_alarms} of {self.n_unchanged} unchanged estimates; 90% change "
            f"intervals cover the true change in {coverage} of {self.n_compared}"
        )


def summarise_scores(scored: pd.DataFrame) -> ChangeScore:
    """Count detections, false alarms and covering intervals of :func:`score_changes` rows.

    Examples
    --------
    >>> scored = pd.DataFrame(
    ...     {
    ...         "kind": ["declared", "unchanged", "unchanged", "induced"],
    ...         "true_change": [0.5, 0.0, 0.0, 0.25],
    ...         "flag": ["up", "down", "steady", "steady"],
    ...         "covered": [True, False, True, True],
    ...     }
    ... )
    >>> summarise_scores(scored)
    ChangeScore(n_declared=1, n_detected=1, n_unchanged=2, n_false_alarms=1, n_compared=4, n_covered=3)
    """  # noqa: E501
    declared = scored["kind"] == "declared"
    right = ((scored["true_change"] > 0) & (scored["flag"] == "up")) | (
        (scored["true_change"] < 0) & (scored["flag"] == "down")
    )
    unchanged = scored["kind"] == "unchanged"
    return ChangeScore(
        n_declared=int(declared.sum()),
        n_detected=int((declared & right).sum()),
        n_unchanged=int(unchanged.sum()),
        n_false_alarms=int((unchanged & scored["flag"].isin(["up", "down"])).sum()),
        n_compared=len(scored),
        n_covered=int(scored["covered"].sum()),
    )
