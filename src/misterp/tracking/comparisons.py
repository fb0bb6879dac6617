"""Comparisons within a wave: each target group against the rest, each brand against each brand.

Both are differences of paired draws, summarised like a change (mean, sd, interval, P(above),
P(below)) and flagged under the wave's flag rule (``tracking.flags``), each kind over its own
set of the wave's comparisons, so "women 18-34 are above the rest" or "brand A is above brand
B" comes with the same stated error as a change arrow.

- **Group vs rest**: the group minus everyone else in its market, both poststratified from the
  same cell draws (``mrp.wave.assemble_estimates``), so the difference is exact draw by draw,
  whatever the base or audience weights. A wave read back from the store has no such draws
  (the rest is not published), so this part exists only in the ``comparisons.parquet`` written
  at publication.
- **Brand vs brand**: per market x question family (all ``aware_*``, ...) x option x target
  group, every pair of brands once (in name order: ``brand`` above ``versus`` is P(above));
  draws in which any brand of the family is NaN are left out, as for the ranks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.config import TrackingConfig
from misterp.mrp.published import GroupDraws, WaveDraws, WaveView
from misterp.mrp.specs import ModelSpec
from misterp.status import FitStatus
from misterp.tracking.competitors import families_of
from misterp.tracking.flags import describe_rule, flag_comparisons

__all__ = [
    "COMPARISONS_FILE",
    "COMPARISONS_VIEW",
    "COMPARISON_COLUMNS",
    "ComparisonFlag",
    "ComparisonKind",
    "comparison_table",
]

COMPARISONS_FILE = "comparisons.parquet"

#: Columns of ``comparisons.parquet``, in order.
COMPARISON_COLUMNS: tuple[str, ...] = (
    "wave",
    "kind",
    "market",
    "family",
    "question_id",
    "option",
    "brand",
    "target_group",
    "versus",
    "versus_question_id",
    "interval",
    "mean",
    "sd",
    "lower",
    "upper",
    "p_above",
    "p_below",
    "p_error",
    "flag",
    "rule",
    "status",
)


class ComparisonKind(StrEnum):
    """What is compared: a group with the rest of its market, or two brands."""

    GROUP_VS_REST = "group_vs_rest"
    BRAND_VS_BRAND = "brand_vs_brand"


class ComparisonFlag(StrEnum):
    """What a comparison says under the flag rule."""

    ABOVE = "above"
    BELOW = "below"
    LEVEL = "level"


_FLAG_OF = {1: ComparisonFlag.ABOVE, -1: ComparisonFlag.BELOW, 0: ComparisonFlag.LEVEL}


def _summary(difference: np.ndarray, interval: float, min_change: float) -> dict[str, float]:
    tail = (1.0 - interval) / 2.0
    lower, upper = np.quantile(difference, [tail, 1.0 - tail])
    return {
        "mean": float(difference.mean()),
        "sd": float(difference.std(ddof=1)) if difference.size > 1 else 0.0,
        "lower": float(lower),
        "upper": float(upper),
        "p_above": float(np.mean(difference > 0)),
        "p_below": float(np.mean(difference < 0)),
        "_above_beyond": float(np.mean(difference > min_change)),
        "_below_beyond": float(np.mean(difference < -min_change)),
    }


def _rest_rows(
    wave: str,
    specs: Sequence[ModelSpec],
    versus_rest: GroupDraws,
    statuses: Mapping[str, FitStatus],
    interval: float,
    min_change: float,
) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        for group, difference in sorted((versus_rest.get(spec.key) or {}).items()):
            values = np.asarray(difference, dtype=float)
            if values.size == 0 or not np.isfinite(values).all():
                continue
            rows.append(
                {
                    "wave": wave,
                    "kind": ComparisonKind.GROUP_VS_REST.value,
                    "market": spec.market,
                    "family": None,
                    "question_id": spec.question_id,
                    "option": spec.option,
                    "brand": spec.brand,
                    "target_group": group,
                    "versus": "rest",
                    "versus_question_id": None,
                    "interval": float(interval),
                    **_summary(values, interval, min_change),
                    "status": statuses.get(spec.key, FitStatus.CONVERGED).value,
                }
            )
    return rows


def _brand_rows(
    wave: str,
    specs: Sequence[ModelSpec],
    draws: GroupDraws,
    statuses: Mapping[str, FitStatus],
    interval: float,
    min_change: float,
) -> list[dict[str, Any]]:
    """Every pair of a family's brands once, for each target group.

    All pairs of a family x group are summarised at once: a 50-brand family has 1,225 pairs,
    and a loop over them was most of the step's time.
    """
    rows = []
    tail = (1.0 - interval) / 2.0
    for (market, family, option), members in sorted(families_of(specs).items()):
        members = sorted((s for s in members if s.key in draws), key=lambda s: str(s.brand))
        if len(members) < 2:
            continue
        first, second = np.triu_indices(len(members), k=1)
        known = [statuses.get(s.key, FitStatus.CONVERGED) for s in members]
        groups = set.intersection(*(set(draws[s.key]) for s in members))
        for group in sorted(groups):
            columns = [np.asarray(draws[s.key][group], dtype=float) for s in members]
            if len({c.shape for c in columns}) != 1:
                continue
            values = np.column_stack(columns)
            values = values[np.isfinite(values).all(axis=1)]
            if len(values) < 2:
                continue
            difference = values[:, first] - values[:, second]  # (draws, pairs)
            lower, upper = np.quantile(difference, [tail, 1.0 - tail], axis=0)
            summary = {
                "mean": difference.mean(axis=0),
                "sd": difference.std(axis=0, ddof=1),
                "lower": lower,
                "upper": upper,
                "p_above": (difference > 0).mean(axis=0),
                "p_below": (difference < 0).mean(axis=0),
                "_above_beyond": (difference > min_change).mean(axis=0),
                "_below_beyond": (difference < -min_change).mean(axis=0),
            }
            for p, (i, j) in enumerate(zip(first, second, strict=True)):
                rows.append(
                    {
                        "wave": wave,
                        "kind": ComparisonKind.BRAND_VS_BRAND.value,
                        "market": market,
                        "family": family,
                        "question_id": members[i].question_id,
                        "option": option,
                        "brand": members[i].brand,
                        "target_group": group,
                        "versus": members[j].brand,
                        "versus_question_id": members[j].question_id,
                        "interval": float(interval),
                        **{name: float(column[p]) for name, column in summary.items()},
                        "status": FitStatus.worst(known[i], known[j]).value,
                    }
                )
    return rows


def comparison_table(
    wave: str,
    specs: Sequence[ModelSpec],
    draws: GroupDraws,
    versus_rest: GroupDraws,
    statuses: Mapping[str, FitStatus] | None = None,
    *,
    interval: float = 0.90,
    tracking: TrackingConfig | None = None,
) -> pd.DataFrame:
    """Every group-vs-rest and brand-vs-brand comparison of a wave, flagged under its rule.

    Each kind is one set for the flag rule: under ``fdr`` the wave's group-vs-rest differences
    share one learnt prior and one false-discovery budget ``q``, its brand pairs another.
    ``p_error`` is each comparison's probability that its (would-be) flag is wrong.
    """
    settings = tracking or TrackingConfig()
    known = statuses or {}
    minimum = settings.flags.min_change
    rows = _rest_rows(wave, specs, versus_rest, known, interval, minimum)
    rows += _brand_rows(wave, specs, draws, known, interval, minimum)
    frame = pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "_above_beyond", "_below_beyond"])
    frame["rule"] = describe_rule(settings.flags, settings.change_probability)
    frame["flag"] = pd.Series(None, index=frame.index, dtype=object)
    frame["p_error"] = np.nan
    for _, part in frame.groupby("kind", sort=False):
        outcome = flag_comparisons(
            part["mean"].to_numpy(float),
            part["sd"].to_numpy(float),
            part["_above_beyond"].to_numpy(float),
            part["_below_beyond"].to_numpy(float),
            settings.flags,
            settings.change_probability,
        )
        frame.loc[part.index, "p_error"] = outcome.error
        frame.loc[part.index, "flag"] = [_FLAG_OF[int(d)].value for d in outcome.direction]
    frame = frame[list(COMPARISON_COLUMNS)]
    numbers = ["interval", "mean", "sd", "lower", "upper", "p_above", "p_below", "p_error"]
    return frame.astype(dict.fromkeys(numbers, float))


def comparison_view(wave: WaveDraws) -> pd.DataFrame:
    """The comparisons of a wave being published, from its draws in memory."""
    return comparison_table(
        wave.wave,
        wave.specs,
        wave.draws,
        wave.versus_rest,
        wave.statuses,
        interval=wave.reporting.interval,
        tracking=wave.tracking,
    )


#: Group vs rest and brand vs brand as a view of each published wave (``comparisons.parquet``).
COMPARISONS_VIEW = WaveView("comparisons", COMPARISONS_FILE, comparison_view)
