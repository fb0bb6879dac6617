"""The classical baseline next to every MRP estimate: raw and raked sample shares.

A user who did not have misterp would rake the panel to the census margins and report the
weighted share. Showing that number beside the MRP estimate makes the model's contribution
visible, and a large gap is worth a look.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.data import WaveData

__all__ = ["kish_ess", "rake_weights", "sample_shares"]

logger = logging.getLogger(__name__)


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


def _import_balance_sample() -> Any:
    """Import ``balance.Sample`` without letting it take over logging.

    On import, balance removes the root logger's handlers (silencing Prefect's console output
    for the rest of the run), adds its own handler to its logger (so each of its warnings
    printed twice, in two formats) and logs a welcome banner at INFO; undo all three. Its
    warnings then go through the application's handlers once.
    """
    root = logging.getLogger()
    root_handlers = root.handlers[:]
    balance_logger = logging.getLogger("balance")
    own_handlers = balance_logger.handlers[:]
    # A logger filter survives balance's setup_logging, which resets the level to INFO.
    balance_logger.addFilter(_below_warning)
    from balance import Sample  # heavy import (~10 s cold); only the aggregation step needs it

    for handler in root_handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    for handler in balance_logger.handlers[:]:
        if handler not in own_handlers:
            balance_logger.removeHandler(handler)
    balance_logger.setLevel(logging.WARNING)
    return Sample


def rake_weights(wave: WaveData) -> pd.Series:
    """Raking weights per respondent (index ``respondent_id``), one raking per market.

    Uses Meta's ``balance`` (iterative proportional fitting to the census margins of every
    demographic). Respondents of every question share one weight, as in a classical tracker.
    """
    Sample = _import_balance_sample()
    demographics = list(wave.demographics)
    parts: list[pd.Series] = []
    for market in wave.markets:
        people = wave.respondents.loc[wave.respondents["market"] == market]
        census = wave.poststrat.loc[
            (wave.poststrat["market"] == market) & (wave.poststrat["population"] > 0)
        ]
        # Equal design weights, passed explicitly: balance warns "No weights passed" otherwise.
        sample = Sample.from_frame(
            people[["respondent_id", *demographics]].astype(str).assign(weight=1.0),
            id_column="respondent_id",
            weight_column="weight",
            standardize_types=False,
        )
        target = Sample.from_frame(
            census[demographics]
            .astype(str)
            .assign(cell_id=[f"cell{i}" for i in range(len(census))])
            .assign(population=census["population"].to_numpy(dtype=float)),
            id_column="cell_id",
            weight_column="population",
        )
        adjusted = sample.set_target(target).adjust(method="rake")
        weights = adjusted.df.set_index("respondent_id")["weight"].astype(float)
        parts.append(weights)
    return pd.concat(parts)


def kish_ess(weights: np.ndarray) -> float:
    """Kish's effective sample size of weighted respondents: ``(sum w)^2 / sum w^2``.

    Raking buys lower bias with variance; the effective sample size says how many
    equally weighted respondents the raked share is worth. NaN for no respondents.

    >>> kish_ess(np.array([1.0, 1.0, 1.0, 1.0]))
    4.0
    >>> kish_ess(np.array([3.0, 1.0]))  # 16 / 10
    1.6
    """
    w = np.asarray(weights, dtype=float)
    denominator = float((w**2).sum())
    return float(w.sum()) ** 2 / denominator if denominator > 0 else float("nan")


def sample_shares(
    wave: WaveData,
    weights: pd.Series,
    target_groups: Mapping[str, Mapping[str, Sequence[str]]],
) -> pd.DataFrame:
    """Respondents, raw share, raked share and its Kish ESS per market x question x option x group.

    ``n`` counts respondents who were shown the option (for a conditional question: those in
    the base) and belong to the group; ``raked_ess`` is ``kish_ess`` of their raking weights.

    Examples
    --------
    >>> people = pd.DataFrame({"respondent_id": ["a", "b", "c"], "market": "X",
    ...                        "g": ["f", "f", "m"]})
    >>> answers = pd.DataFrame({"respondent_id": ["a", "b", "c"], "question_id": "q",
    ...                         "option": "yes", "selected": [1, 0, 1]})
    >>> wave = WaveData(people, answers, pd.DataFrame(), pd.DataFrame(), ("g",))
    >>> w = pd.Series([3.0, 1.0, 1.0], index=["a", "b", "c"])
    >>> out = sample_shares(wave, w, {"women": {"g": ["f"]}})
    >>> out[["target_group", "n", "raw_mean", "raked_mean", "raked_ess"]].to_dict("records")[1]
    {'target_group': 'women', 'n': 2, 'raw_mean': 0.5, 'raked_mean': 0.75, 'raked_ess': 1.6}
    """
    people = wave.respondents.set_index("respondent_id")
    frame = wave.answers[["respondent_id", "question_id", "option", "selected"]].copy()
    ids = frame["respondent_id"].astype(str)
    frame["market"] = people["market"].reindex(ids).to_numpy()
    frame["weight"] = weights.reindex(ids).to_numpy(dtype=float)
    frame["weighted"] = frame["weight"] * frame["selected"]
    frame["weight_sq"] = frame["weight"] ** 2
    groups: dict[str, np.ndarray] = {"all": np.ones(len(frame), dtype=bool)}
    for name, definition in target_groups.items():
        member = np.ones(len(frame), dtype=bool)
        for column, levels in definition.items():
            values = people[column].astype(str).reindex(ids).to_numpy()
            member &= np.isin(values, [str(level) for level in levels])
        groups[name] = member
    keys = ["market", "question_id", "option"]
    parts = []
    for name, member in groups.items():
        sub = frame.loc[member]
        agg = sub.groupby(keys, observed=True).agg(
            n=("selected", "size"),
            selected=("selected", "sum"),
            weighted=("weighted", "sum"),
            weight=("weight", "sum"),
            weight_sq=("weight_sq", "sum"),
        )
        agg["raw_mean"] = agg["selected"] / agg["n"]
        agg["raked_mean"] = agg["weighted"] / agg["weight"]
        agg["raked_ess"] = agg["weight"] ** 2 / agg["weight_sq"]  # kish_ess, vectorised
        parts.append(agg.assign(target_group=name).reset_index())
    out = pd.concat(parts, ignore_index=True)
    columns = [*keys, "target_group", "n", "raw_mean", "raked_mean", "raked_ess"]
    return out[columns].astype({"n": "int64"})
