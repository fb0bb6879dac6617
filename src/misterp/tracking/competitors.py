"""Brands against each other: rank distributions and shares of the total, draw-wise.

Per market x question family (all ``aware_*``, all ``consider_*``, each association option) x
target group, the brands' paired draws are ranked in every draw, so "brand A leads" comes with
its probability instead of a comparison of two means. A conditional family (an association
asked among each brand's aware) is compared on its published values, the shares among each
brand's own base.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from misterp.mrp.poststratify import DEFAULT_INTERVAL, summarise
from misterp.mrp.published import (
    GroupDraws,
    WaveDraws,
    WaveView,
    question_family,
    read_published_draws,
)
from misterp.mrp.specs import ModelSpec
from misterp.status import FitStatus
from misterp.storage import ResultStore

__all__ = [
    "COMPETITORS_FILE",
    "COMPETITORS_VIEW",
    "COMPETITOR_COLUMNS",
    "build_competitors",
    "competitor_table",
    "competitor_view",
    "families_of",
    "rank_draws",
    "rank_probabilities",
    "share_of_total",
]

COMPETITORS_FILE = "competitors.parquet"

#: Columns of ``competitors.parquet``, in order. ``p_rank`` is a list: P(rank r) at index r-1.
COMPETITOR_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "family",
    "option",
    "target_group",
    "brand",
    "question_id",
    "n_brands",
    "interval",
    "mean",
    "share_of_total_mean",
    "share_of_total_lower",
    "share_of_total_upper",
    "p_rank_1",
    "expected_rank",
    "p_rank",
    "status",
)


def rank_draws(values: np.ndarray) -> np.ndarray:
    """Rank of each brand (columns) in each draw (rows): 1 is the highest value.

    Tied brands share the better rank, so a tie for the lead counts as rank 1 for both.

    >>> rank_draws(np.array([[0.5, 0.25, 0.125], [0.25, 0.5, 0.125], [0.5, 0.5, 0.0]])).tolist()
    [[1, 2, 3], [2, 1, 3], [1, 1, 3]]
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be (draws, brands), got shape {values.shape}")
    # rank = 1 + the number of brands strictly above, compared within each draw
    return 1 + (values[:, None, :] > values[:, :, None]).sum(axis=2)


def rank_probabilities(ranks: np.ndarray) -> np.ndarray:
    """``(brands, brands)``: row b, column r-1 is P(brand b has rank r) over the draws.

    >>> rank_probabilities(np.array([[1, 2], [2, 1], [1, 2], [1, 2]])).tolist()
    [[0.75, 0.25], [0.25, 0.75]]
    """
    ranks = np.asarray(ranks)
    n_brands = ranks.shape[1]
    return np.stack([(ranks == r).mean(axis=0) for r in range(1, n_brands + 1)], axis=1).astype(
        float
    )


def share_of_total(values: np.ndarray) -> np.ndarray:
    """Each brand's share of the sum over brands, per draw (share of awareness for ``aware``).

    NaN in a draw where every brand is 0.

    >>> share_of_total(np.array([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0]])).tolist()[0]
    [0.5, 0.25, 0.25]
    """
    values = np.asarray(values, dtype=float)
    total = values.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, values / total, np.nan)


def families_of(specs: Sequence[ModelSpec]) -> dict[tuple[str, str, str], list[ModelSpec]]:
    """Market x question family x option to its brands' specs (brand questions only)."""
    families: dict[tuple[str, str, str], list[ModelSpec]] = defaultdict(list)
    for spec in specs:
        family = question_family(spec.question_id, spec.brand)
        if family is not None:
            families[(spec.market, family, spec.option)].append(spec)
    return families


def competitor_table(
    wave: str,
    specs: Sequence[ModelSpec],
    draws: GroupDraws,
    interval: float = DEFAULT_INTERVAL,
    statuses: Mapping[str, FitStatus] | None = None,
) -> pd.DataFrame:
    """One row per market x family x option x target group x brand, for families of 2+ brands.

    Brands without draws (failed models) are left out and ``n_brands`` says how many were
    compared; draws in which any brand is NaN are left out of that comparison. ``statuses``
    (model key to the status on its estimates): a row's ``status`` is the worst over the
    brands compared, since every brand's draws move every rank.
    """
    known = statuses or {}
    rows: list[dict[str, Any]] = []
    for (market, family, option), members in sorted(families_of(specs).items()):
        members = sorted((s for s in members if s.key in draws), key=lambda s: str(s.brand))
        if len(members) < 2:
            continue
        status = FitStatus.worst(*(known.get(s.key, FitStatus.CONVERGED) for s in members))
        groups = [g for g in draws[members[0].key] if all(g in draws[s.key] for s in members)]
        for group in groups:
            values = np.column_stack([np.asarray(draws[s.key][group], float) for s in members])
            values = values[np.isfinite(values).all(axis=1)]
            if len(values) == 0:
                continue
            ranks = rank_draws(values)
            p_rank = rank_probabilities(ranks)
            shares = share_of_total(values)
            for b, spec in enumerate(members):
                share = summarise(shares[:, b], interval)
                rows.append(
                    {
                        "wave": wave,
                        "market": market,
                        "family": family,
                        "option": option,
                        "target_group": group,
                        "brand": spec.brand,
                        "question_id": spec.question_id,
                        "n_brands": len(members),
                        "interval": float(interval),
                        "mean": float(values[:, b].mean()),
                        "share_of_total_mean": share["mean"],
                        "share_of_total_lower": share["lower"],
                        "share_of_total_upper": share["upper"],
                        "p_rank_1": float(p_rank[b, 0]),
                        "expected_rank": float(ranks[:, b].mean()),
                        "p_rank": p_rank[b].tolist(),
                        "status": status.value,
                    }
                )
    frame = pd.DataFrame(rows, columns=list(COMPETITOR_COLUMNS))
    return frame.astype({"n_brands": "int64"})


def competitor_view(wave: WaveDraws) -> pd.DataFrame:
    """The competitor table of a wave being published, from its draws in memory."""
    return competitor_table(
        wave.wave, wave.specs, wave.draws, wave.reporting.interval, wave.statuses
    )


#: The competitor comparison as a view of each published wave (``competitors.parquet``).
COMPETITORS_VIEW = WaveView("competitors", COMPETITORS_FILE, competitor_view)


def build_competitors(store: ResultStore, wave: str) -> pd.DataFrame:
    """Build a published wave's competitor table from its stored draws; write it beside them.

    For a wave published before this view existed; ``publish_wave`` builds it in memory.
    """
    published = read_published_draws(store, wave)
    reporting = published.manifest.config.get("reporting") or {}
    table = competitor_table(
        wave,
        published.specs,
        published.draws,
        reporting.get("interval", DEFAULT_INTERVAL),
        published.statuses,
    )
    store.write_parquet(f"{wave}/{COMPETITORS_FILE}", table)
    return table
