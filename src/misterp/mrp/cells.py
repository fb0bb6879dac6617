"""Respondents to binomial cells: successes and trials per demographic cell of a market.

Every model of a market is fitted on the same cell layout: the census cells plus any cell that
occurs in the survey but not in the census. Cells without respondents carry n = 0 (no
likelihood contribution) and still get posterior predictions, so a level nobody in the base
has (a region where nobody knows a small brand) is predicted from the group-effect
distribution, N(0, sigma), draw by draw. The shared layout also lets one compiled model serve
every question of a market with only the data swapped.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from misterp.mrp.data import WaveData
from misterp.mrp.specs import ModelSpec

__all__ = [
    "CellCounts",
    "MarketCells",
    "aggregate_cells",
    "build_market_cells",
    "census_cells",
    "census_index",
    "earlier_profile_counts",
    "group_masks",
    "profile_counts",
]

ALL_GROUP = "all"


@dataclass(frozen=True)
class MarketCells:
    """The cell layout of one market: demographics per cell and census population.

    ``frame`` has one row per cell with the demographic columns as ordered categoricals (levels
    sorted) and ``population`` (0 for survey cells the census lacks). ``demographics`` are all
    the cell columns; the last of them may be ``profiles`` (respondent-only variables of an
    audience): a census cell is then repeated once per profile level, each copy with the census
    cell's population, which poststratification multiplies by P(level | census cell) draw by
    draw (:func:`misterp.mrp.profiles.profile_weights`).
    """

    market: str
    frame: pd.DataFrame
    demographics: tuple[str, ...]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()

    @property
    def census_columns(self) -> tuple[str, ...]:
        """The cell columns the census has (the demographics without the profiles)."""
        return tuple(c for c in self.demographics if c not in self.profiles)

    @property
    def population(self) -> np.ndarray:
        """Census count per cell."""
        return self.frame["population"].to_numpy(dtype=float)

    @property
    def n_cells(self) -> int:
        """Number of cells in the layout."""
        return len(self.frame)

    @functools.cached_property
    def layout_hash(self) -> str:
        """Identity of the layout: models compiled for one layout can be reused on it.

        Computed once per layout (the frame is not changed after it is built): every fit
        looks its compiled model up by it, and hashing the frame's text took 9 ms a fit.
        """
        text = self.frame[list(self.demographics)].astype(str).to_csv(index=False)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CellCounts:
    """Successes and trials per cell of a market layout, for one model."""

    yes: np.ndarray
    n: np.ndarray

    @property
    def data_hash(self) -> str:
        """Content hash of the model's data, so a re-run can skip unchanged fits."""
        digest = hashlib.sha256(self.yes.astype(np.int64).tobytes())
        digest.update(self.n.astype(np.int64).tobytes())
        return digest.hexdigest()[:16]


def group_masks(
    frame: pd.DataFrame, target_groups: Mapping[str, Mapping[str, Sequence[str]]]
) -> dict[str, np.ndarray]:
    """Boolean cell membership per target group, ``all`` first.

    Examples
    --------
    >>> cells = pd.DataFrame({"gender": ["female", "male"], "age": ["18-24", "18-24"]})
    >>> group_masks(cells, {"women": {"gender": ["female"]}})["women"].tolist()
    [True, False]
    """
    masks = {ALL_GROUP: np.ones(len(frame), dtype=bool)}
    for name, definition in target_groups.items():
        mask = np.ones(len(frame), dtype=bool)
        for column, levels in definition.items():
            mask &= frame[column].astype(str).isin([str(level) for level in levels]).to_numpy()
        masks[name] = mask
    return masks


def build_market_cells(
    wave: WaveData,
    target_groups: Mapping[str, Mapping[str, Sequence[str]]],
    profiles: Sequence[str] = (),
) -> dict[str, MarketCells]:
    """Cell layout per market: census cells plus survey-only cells (population 0).

    Survey-only cells are kept so that no respondent is silently dropped from a model. Each
    of ``profiles`` (respondent columns an audience uses) crosses every census cell with the
    profile's levels in the market; respondents without a level (None) have no cell.
    """
    demographics = list(wave.demographics)
    columns = [*demographics, *profiles]
    layouts: dict[str, MarketCells] = {}
    for market in wave.markets:
        in_market = wave.poststrat.loc[
            wave.poststrat["market"] == market, [*demographics, "population"]
        ].astype(dict.fromkeys(demographics, str))
        census = in_market.groupby(demographics, as_index=False, sort=True)["population"].sum()
        people = wave.respondents.loc[wave.respondents["market"] == market, columns]
        people = people.dropna(subset=list(profiles))
        for name in profiles:
            profile_levels = sorted(people[name].astype(str).unique().tolist())
            census = census.merge(pd.DataFrame({name: profile_levels}), how="cross")
        survey_cells = people.astype(str).drop_duplicates()
        frame = census.merge(survey_cells, on=columns, how="outer")
        frame["population"] = frame["population"].fillna(0.0).astype(float)
        for column in columns:
            levels = sorted(frame[column].unique().tolist())
            frame[column] = pd.Categorical(frame[column], categories=levels)
        frame = frame.sort_values(columns).reset_index(drop=True)
        layouts[market] = MarketCells(
            market=market,
            frame=frame,
            demographics=tuple(columns),
            masks=group_masks(frame, target_groups),
            profiles=tuple(profiles),
        )
    return layouts


def respondent_cells(wave: WaveData, layouts: Mapping[str, MarketCells]) -> pd.Series:
    """Cell index of each respondent within its market's layout (indexed by respondent_id).

    Respondents without a level of a layout's profile (missing at random) have no cell and
    are left out.
    """
    parts = []
    for market, layout in layouts.items():
        columns = list(layout.demographics)
        keys = layout.frame[columns].astype(str).assign(cell=np.arange(layout.n_cells))
        people = wave.respondents.loc[wave.respondents["market"] == market]
        people = people[["respondent_id", *columns]].dropna(subset=list(layout.profiles))
        people = people.astype(str)
        parts.append(people.merge(keys, on=columns, how="left")[["respondent_id", "cell"]])
    mapping = pd.concat(parts, ignore_index=True).set_index("respondent_id")["cell"]
    if mapping.isna().any():  # cannot happen: the layout includes every survey cell
        raise AssertionError("respondent without a cell in its market layout")
    return mapping.astype(np.int64)


def aggregate_cells(
    wave: WaveData, layouts: Mapping[str, MarketCells], specs: Sequence[ModelSpec]
) -> dict[str, CellCounts]:
    """Successes and trials per cell for every spec, in one pass over the answers.

    Trials are the respondents who were shown the option; for a conditional question that is
    the base, so the model estimates P(option | cell, base).

    Examples
    --------
    Two respondents in one cell, one selects the option:

    >>> from misterp.mrp.data import WaveData
    >>> people = pd.DataFrame({"respondent_id": ["a", "b"], "market": "X", "g": "f"})
    >>> answers = pd.DataFrame({"respondent_id": ["a", "b"], "question_id": "q",
    ...                         "option": "yes", "selected": [1, 0]})
    >>> census = pd.DataFrame({"market": ["X", "X"], "g": ["f", "m"], "population": [5.0, 5.0]})
    >>> wave = WaveData(people, answers, census, pd.DataFrame(), ("g",))
    >>> layouts = build_market_cells(wave, {})
    >>> counts = aggregate_cells(wave, layouts, [ModelSpec("X", "q", "yes", "f")])
    >>> counts["X/q/yes"].yes.tolist(), counts["X/q/yes"].n.tolist()
    ([1, 0], [2, 0])
    """
    cells = respondent_cells(wave, layouts)
    answers = wave.answers[["respondent_id", "question_id", "option", "selected"]].copy()
    answers["cell"] = cells.reindex(answers["respondent_id"].astype(str)).to_numpy()
    answers = answers.dropna(subset=["cell"])  # respondents left out of a profile's layout
    answers["cell"] = answers["cell"].astype(np.int64)
    answers["market"] = (
        wave.respondents.set_index("respondent_id")["market"]
        .reindex(answers["respondent_id"].astype(str))
        .to_numpy()
    )
    totals = answers.groupby(["market", "question_id", "option", "cell"], observed=True)[
        "selected"
    ].agg(["sum", "count"])
    counts: dict[str, CellCounts] = {}
    grouped = dict(tuple(totals.groupby(level=[0, 1, 2], observed=True)))
    in_market = wave.respondents.set_index("respondent_id")["market"].reindex(cells.index)
    for spec in specs:
        n_cells = layouts[spec.market].n_cells
        if spec.profile is not None:  # a profile model: every respondent with a cell
            counts[spec.key] = profile_counts(layouts[spec.market], spec, cells, in_market)
            continue
        yes = np.zeros(n_cells, dtype=np.int64)
        n = np.zeros(n_cells, dtype=np.int64)
        part = grouped.get((spec.market, spec.question_id, spec.option))
        if part is not None:
            index = part.index.get_level_values("cell").to_numpy(dtype=np.int64)
            yes[index] = part["sum"].to_numpy(dtype=np.int64)
            n[index] = part["count"].to_numpy(dtype=np.int64)
        counts[spec.key] = CellCounts(yes=yes, n=n)
    return counts


def census_index(layout: MarketCells) -> np.ndarray:
    """For each cell of ``layout``, the row of its census cell in :func:`census_cells`.

    >>> frame = pd.DataFrame({"g": ["f", "f", "m", "m"], "user": ["no", "yes", "no", "yes"],
    ...                       "population": [3.0, 3.0, 1.0, 1.0]})
    >>> census_index(MarketCells("X", frame, ("g", "user"), profiles=("user",))).tolist()
    [0, 0, 1, 1]
    """
    columns = list(layout.census_columns)
    keys = layout.frame[columns].astype(str)
    distinct = keys.drop_duplicates().sort_values(columns).reset_index(drop=True)
    distinct["__census_cell"] = np.arange(len(distinct))
    return keys.merge(distinct, on=columns, how="left")["__census_cell"].to_numpy(dtype=np.int64)


def census_cells(layout: MarketCells) -> MarketCells:
    """The census cells of a layout with profiles: one row per census cell, no profile columns.

    A profile's model, P(level | census cell), is fitted on these: its formula has no profile
    term, so the profile's copies of a census cell would only repeat one prediction.

    >>> frame = pd.DataFrame({"g": pd.Categorical(["f", "f", "m", "m"]),
    ...                       "user": ["no", "yes", "no", "yes"],
    ...                       "population": [3.0, 3.0, 1.0, 1.0]})
    >>> census = census_cells(MarketCells("X", frame, ("g", "user"), profiles=("user",)))
    >>> census.frame.astype({"g": str}).to_dict("list"), census.demographics
    ({'g': ['f', 'm'], 'population': [3.0, 1.0]}, ('g',))
    """
    if not layout.profiles:
        return layout
    columns = list(layout.census_columns)
    index = census_index(layout)
    first = np.unique(index, return_index=True)[1]
    frame = layout.frame.iloc[first][[*columns, "population"]].reset_index(drop=True)
    return MarketCells(layout.market, frame, tuple(columns))


def profile_counts(
    layout: MarketCells, spec: ModelSpec, cells: pd.Series, markets: pd.Series
) -> CellCounts:
    """Trials and successes of a profile model: respondents per census cell, and those at its level.

    The cells are those of :func:`census_cells`.

    >>> frame = pd.DataFrame({"g": ["f", "f", "m", "m"], "user": ["no", "yes", "no", "yes"],
    ...                       "population": 1.0})
    >>> layout = MarketCells("X", frame, ("g", "user"), profiles=("user",))
    >>> cells = pd.Series([0, 1, 1, 3], index=["a", "b", "c", "d"])
    >>> spec = ModelSpec("X", "profile.user", "yes", "f", profile="user")
    >>> counts = profile_counts(layout, spec, cells, pd.Series("X", index=cells.index))
    >>> counts.yes.tolist(), counts.n.tolist()
    ([2, 1], [3, 1])
    """
    assert spec.profile is not None
    index = census_index(layout)
    n_census = int(index.max()) + 1 if len(index) else 0
    mine = cells[markets.eq(spec.market).to_numpy()].to_numpy(dtype=np.int64)
    at_level = layout.frame[spec.profile].astype(str).eq(spec.option).to_numpy()
    n = np.bincount(index[mine], minlength=n_census).astype(np.int64)
    yes = np.bincount(index[mine[at_level[mine]]], minlength=n_census).astype(np.int64)
    return CellCounts(yes=yes, n=n)


def earlier_profile_counts(
    layout: MarketCells, spec: ModelSpec, people: pd.DataFrame
) -> tuple[CellCounts, int]:
    """A profile model's trials and successes among an earlier wave's respondents.

    On this wave's census cells (:func:`census_cells`), so they add to :func:`profile_counts`:
    a profile model pooled over waves sees every wave's respondents of its market. A
    respondent whose census cell or profile level this wave's layout lacks (a level renamed,
    a blank under ``missing: at_random``) is left out; how many is returned beside the counts.

    >>> frame = pd.DataFrame({"g": ["f", "f", "m", "m"], "user": ["no", "yes", "no", "yes"],
    ...                       "population": 1.0})
    >>> layout = MarketCells("X", frame, ("g", "user"), profiles=("user",))
    >>> people = pd.DataFrame({"market": ["X", "X", "X", "Y", "X"], "g": ["f", "m", "m", "f", "x"],
    ...                        "user": ["yes", "no", "maybe", "yes", "yes"]})
    >>> counts, left_out = earlier_profile_counts(
    ...     layout, ModelSpec("X", "profile.user", "yes", "f", profile="user"), people)
    >>> counts.yes.tolist(), counts.n.tolist(), left_out
    ([1, 0], [1, 1], 2)
    """
    assert spec.profile is not None
    census = census_cells(layout)
    columns = list(census.demographics)
    keys = census.frame[columns].astype(str).assign(__census_cell=np.arange(census.n_cells))
    levels = set(layout.frame[spec.profile].astype(str))
    mine = people.loc[people["market"].astype(str).eq(spec.market)]
    placed = mine[[*columns, spec.profile]].astype(object).merge(keys, on=columns, how="left")
    usable = placed["__census_cell"].notna() & placed[spec.profile].isin(levels)
    cell = placed.loc[usable, "__census_cell"].to_numpy(dtype=np.int64)
    at_level = placed.loc[usable, spec.profile].eq(spec.option).to_numpy()
    n = np.bincount(cell, minlength=census.n_cells).astype(np.int64)
    yes = np.bincount(cell[at_level], minlength=census.n_cells).astype(np.int64)
    return CellCounts(yes=yes, n=n), int((~usable).sum())
