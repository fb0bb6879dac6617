"""A market's census joint built from margins and cross-tables by iterative proportional fitting.

Statistics offices publish margins (gender, age, region) and a few cross-tables (gender x age)
far more often than the full joint that poststratification needs. A wave may therefore give
``census_tables`` instead of ``poststrat``: one row per cell of a named table, with the
demographics the table crosses filled in and the others blank. The rules that relate its
tables (same totals, same levels, a cross-table that agrees with the margins it shares) are
checked here, with file, column, rows and fix, and the joint is built per market by IPF
(``ipfn``; balance has IPF only privately and only for one-column margins).

IPF keeps the seed's interactions wherever the tables say nothing: from a ``uniform`` seed,
demographics that share no table come out independent; from the ``sample`` seed, they keep
the respondents' own association (the panel's selection bias is mostly in the margins, which
IPF replaces). Which one is closer is an empirical question: ``bench/census_margins.py``.

Everything downstream (cells, poststratification, raking) reads the built joint as if it
were ``poststrat``; how it was built (:class:`CensusReport`) is published beside it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
from ipfn.ipfn import ipfn

from misterp.health import markdown_cell
from misterp.inputs import InputTable, ValidationProblem, join_distinct
from misterp.records import Record

__all__ = [
    "CENSUS_FILE",
    "SAMPLE_SEED_FLOOR",
    "TABLE_TOLERANCE",
    "BuiltCensus",
    "CensusReport",
    "CensusSeed",
    "IpfResult",
    "MarketCensus",
    "TableFit",
    "build_census",
    "census_table_problems",
    "fit_joint",
    "tables_of_joint",
]

#: Where a wave built from margins publishes its built joint, relative to the wave folder.
CENSUS_FILE = "census.parquet"

#: Tables of one market may differ by this share of the market's total (rounding, a census
#: published in thousands) before their totals or a shared margin count as contradictory.
TABLE_TOLERANCE = 0.005

#: Respondents added to every cell of a ``sample`` seed: a cell nobody in the panel falls into
#: is rare, not impossible, and IPF can never move a seed cell away from zero.
SAMPLE_SEED_FLOOR = 0.5


class CensusSeed(StrEnum):
    """Where IPF starts: what the joint keeps of the interactions no table gives."""

    #: Every cell alike: demographics that share no table come out independent.
    UNIFORM = "uniform"
    #: The respondents' cell counts (plus :data:`SAMPLE_SEED_FLOOR`): their associations.
    SAMPLE = "sample"


class TableFit(Record):
    """How closely the built joint reproduces one given table of a market."""

    table: str
    demographics: tuple[str, ...]
    #: Largest absolute difference of a cell of the table, in people.
    max_abs_deviation: float
    #: The same as a share of the market's total.
    max_share_deviation: float


class MarketCensus(Record):
    """One market's built joint: its total, how IPF ended and its fit to every table."""

    market: str
    total: float
    cells: int
    iterations: int
    converged: bool
    tables: tuple[TableFit, ...]


class CensusReport(Record):
    """How a wave's census was built from margins: published in its manifest and health.md."""

    source: str
    seed: CensusSeed
    markets: tuple[MarketCensus, ...]

    @property
    def max_share_deviation(self) -> float:
        """The worst fit to any given table, as a share of its market's total."""
        return max((t.max_share_deviation for m in self.markets for t in m.tables), default=0.0)

    def to_markdown(self) -> str:
        """The section of ``health.md`` that says how the census was built and how well."""
        lines = [
            "## Census built from margins",
            "",
            f"The census joint (`{CENSUS_FILE}`) was built from `{markdown_cell(self.source)}` "
            f"by iterative proportional fitting from a {self.seed.value} seed. Largest "
            "difference of the built joint from each given table:",
            "",
            "| market | table | demographics | iterations | max abs deviation | share of total |",
            "|---|---|---|---:|---:|---:|",
        ]
        for market in self.markets:
            iterations = f"{market.iterations}" + ("" if market.converged else " (not converged)")
            for fit in market.tables:
                lines.append(
                    f"| {markdown_cell(market.market)} | {markdown_cell(fit.table)} | "
                    f"{markdown_cell(' x '.join(fit.demographics))} | {iterations} | "
                    f"{fit.max_abs_deviation:,.1f} | {fit.max_share_deviation:.4%} |"
                )
        return "\n".join([*lines, ""])


@dataclass(frozen=True)
class BuiltCensus:
    """The joint built from a wave's census tables and the report of how it was built.

    ``joint`` has the columns of ``poststrat``: ``market``, the demographics (str) and
    ``population`` (float), one row per cell of the product of each market's levels.
    """

    joint: pd.DataFrame
    report: CensusReport


@dataclass(frozen=True)
class IpfResult:
    """A fitted joint array and how the fit ended."""

    joint: np.ndarray
    iterations: int
    converged: bool


def fit_joint(
    seed: np.ndarray,
    margins: Sequence[tuple[tuple[int, ...], np.ndarray]],
    *,
    tolerance: float = 1e-8,
    max_iterations: int = 1000,
) -> IpfResult:
    """Scale ``seed`` until its sums over each margin's axes match the margin (IPF).

    Parameters
    ----------
    seed
        Starting joint, one axis per demographic; zero cells stay zero.
    margins
        ``(axes, table)``: the axes a table keeps (ascending) and its counts, shaped like the
        seed along those axes.
    tolerance
        Stop when every margin is matched to this relative difference.
    max_iterations
        Stop after this many cycles over the margins (``converged`` is then False).

    Examples
    --------
    Rows 30 and 70, columns 40 and 60 from a uniform seed: the independent joint.

    >>> result = fit_joint(np.ones((2, 2)), [((0,), np.array([30.0, 70.0])),
    ...                                      ((1,), np.array([40.0, 60.0]))])
    >>> result.joint.round(6).tolist(), result.converged
    ([[12.0, 18.0], [28.0, 42.0]], True)
    """
    aggregates = [np.asarray(table, dtype=float).copy() for _, table in margins]
    dimensions = [list(axes) for axes, _ in margins]
    fitter = ipfn(
        np.asarray(seed, dtype=float).copy(),
        aggregates,
        dimensions,
        convergence_rate=tolerance,
        max_iteration=max_iterations,
        verbose=2,
        rate_tolerance=1e-12,  # a plateau (tables that disagree within tolerance) ends it
    )
    # ipfn prints its stopping reason and divides 0 by 0 for a level with no people
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        joint, converged, history = fitter.iteration()
    return IpfResult(np.asarray(joint, dtype=float), len(history), bool(converged))


# -- validation --------------------------------------------------------------------------------


def _number(value: float) -> str:
    return f"{value:,.0f}"


def _filled(frame: pd.DataFrame, demographics: Sequence[str]) -> pd.Series:
    """The demographics each row fills, in config order, as a tuple per row."""
    present = [name for name in demographics if name in frame.columns]
    filled = frame[present].notna()
    return pd.Series(
        [tuple(n for n, f in zip(present, row, strict=True) if f) for row in filled.to_numpy()],
        index=frame.index,
        dtype=object,
    )


def _table_shapes(
    table: InputTable, rows: pd.DataFrame, dims: pd.Series, market: str
) -> tuple[dict[str, tuple[str, ...]], list[ValidationProblem]]:
    """Each table's demographics (its usual row); rows that fill others are problems."""
    shapes: dict[str, tuple[str, ...]] = {}
    problems = []
    for name, group in rows.groupby("table", sort=True):
        filled = dims[group.index]
        usual: tuple[str, ...] = filled.value_counts(sort=True).index[0]
        shapes[str(name)] = usual
        odd = filled[filled.map(lambda d, usual=usual: d != usual)]
        if not usual:
            message = f"market {market}: table '{name}' fills no demographic"
            fix = "fill the demographics the table crosses (e.g. gender and age for gender_x_age)"
            problems.append(table.problem("table", group.index, message, fix))
        elif len(odd):
            message = (
                f"market {market}: table '{name}' crosses {' x '.join(usual)}, but these rows "
                f"fill {join_distinct(' x '.join(d) or 'nothing' for d in odd)}"
            )
            fix = (
                "fill the same demographics in every row of a table and leave the others "
                "blank, or give these rows another table name"
            )
            column = sorted(set(odd.iloc[0]) ^ set(usual))[0]
            problems.append(table.problem(column, odd.index, message, fix))
    return shapes, problems


def _market_problems(
    table: InputTable,
    rows: pd.DataFrame,
    population: pd.Series,
    shapes: Mapping[str, tuple[str, ...]],
    demographics: Sequence[str],
    market: str,
) -> list[ValidationProblem]:
    """A market's tables must cover every demographic and agree on totals, levels and margins."""
    problems = []
    covered = {name for shape in shapes.values() for name in shape}
    listing = ", ".join(f"{name} ({' x '.join(shape)})" for name, shape in shapes.items())
    for name in demographics:
        if name not in covered:
            message = f"market {market}: no table gives {name} (tables: {listing})"
            fix = f"add a table of {name} for market {market} (its margin, or a cross-table)"
            problems.append(table.problem(name, rows.index, message, fix))
    totals = population.groupby(rows["table"]).sum()
    grand = float(totals.max())
    if grand - float(totals.min()) > TABLE_TOLERANCE * grand:
        figures = ", ".join(f"{name} {_number(total)}" for name, total in totals.items())
        message = (
            f"market {market}: its tables sum to different totals ({figures}), more than "
            f"{TABLE_TOLERANCE:.1%} apart"
        )
        fix = (
            f"give every table of market {market} the same total: the same census, date and "
            "universe (e.g. adults 18+ in all of them)"
        )
        problems.append(table.problem("population", rows.index, message, fix))
        return problems  # levels and shared margins cannot agree when the totals differ
    for name in demographics:
        having = [t for t, shape in shapes.items() if name in shape]
        levels = {t: set(rows.loc[rows["table"].eq(t), name].dropna()) for t in having}
        every = set().union(*levels.values()) if levels else set()
        for level in sorted(every):
            lacking = [t for t in having if level not in levels[t]]
            if lacking:
                holding = [t for t in having if level in levels[t]]
                message = (
                    f"market {market}: {name} '{level}' is in table {join_distinct(holding)} "
                    f"but not in {join_distinct(lacking)}"
                )
                fix = (
                    f"use the same levels of {name} in every table of market {market}: recode "
                    "it, or add the level to the other tables (population 0 if nobody is in it)"
                )
                index = rows.index[rows[name].eq(level)]
                problems.append(table.problem(name, index, message, fix))
    if problems:
        return problems
    for first, second in itertools.combinations(sorted(shapes), 2):
        shared = [name for name in demographics if name in shapes[first] and name in shapes[second]]
        if shared:
            problems += _shared_margin_problems(table, rows, population, first, second, shared)
    return problems


def _shared_margin_problems(
    table: InputTable,
    rows: pd.DataFrame,
    population: pd.Series,
    first: str,
    second: str,
    shared: list[str],
) -> list[ValidationProblem]:
    """Two tables summed to the demographics they share must give the same figures."""
    market = str(rows["market"].iloc[0])
    sums = [
        population[rows["table"].eq(name)].groupby([rows[c] for c in shared]).sum()
        for name in (first, second)
    ]
    a, b = (s.reindex(sums[0].index.union(sums[1].index), fill_value=0.0) for s in sums)
    total = float(population[rows["table"].eq(first)].sum())
    apart = (a - b).abs()
    off = apart[apart > TABLE_TOLERANCE * total]
    if off.empty:
        return []
    position = int(np.argmax(off.to_numpy()))
    worst = off.index[position]
    level = " x ".join(f"'{v}'" for v in (worst if isinstance(worst, tuple) else (worst,)))
    in_first = float(a.reindex(off.index).to_numpy()[position])
    in_second = float(b.reindex(off.index).to_numpy()[position])
    message = (
        f"market {market}: tables {first} and {second} disagree on {' x '.join(shared)} "
        f"{level}: {_number(in_first)} in {first} vs {_number(in_second)} in {second} (more "
        f"than {TABLE_TOLERANCE:.1%} of the total {_number(total)} apart"
        + (f"; {len(off)} levels disagree)" if len(off) > 1 else ")")
    )
    fix = (
        f"make the tables agree: {first} summed over its other columns must give the same "
        f"{' x '.join(shared)} figures as {second} (same census, date and universe)"
    )
    keys = set(off.index)
    in_pair = rows["table"].isin([first, second])
    at_level = pd.Series(
        [
            (k[0] if len(shared) == 1 else tuple(k)) in keys
            for k in rows[shared].itertuples(index=False)
        ],
        index=rows.index,
    )
    return [table.problem(shared[0], rows.index[in_pair & at_level], message, fix)]


def census_table_problems(
    table: InputTable, demographics: Sequence[str]
) -> list[ValidationProblem]:
    """The rules that relate the tables of ``census_tables``, market by market.

    Each table fills the same demographics in every row; a market's tables cover every
    demographic, sum to the same total, have the same levels of a demographic they share, and
    agree on what they share (a cross-table summed to one of its demographics is that
    demographic's margin), each within :data:`TABLE_TOLERANCE` of the total. Rows with a missing
    market, table or population are the schema's to report and are skipped here.
    """
    if not table.has("market", "table", "population"):
        return []
    frame = table.frame.dropna(subset=["market", "table"])
    population = pd.to_numeric(frame["population"], errors="coerce")
    dims = _filled(frame, demographics)
    problems = []
    for market, rows in frame.groupby("market", sort=True):
        if population[rows.index].isna().any() or not set(demographics) <= set(frame.columns):
            continue
        shapes, shape_problems = _table_shapes(table, rows, dims, str(market))
        problems += shape_problems
        if not shape_problems:
            problems += _market_problems(
                table, rows, population[rows.index], shapes, demographics, str(market)
            )
    return problems


# -- building ----------------------------------------------------------------------------------


def _seed_array(
    seed: CensusSeed,
    respondents: pd.DataFrame,
    levels: Mapping[str, list[str]],
) -> np.ndarray:
    """The starting joint: ones, or the respondents' cell counts plus the floor."""
    shape = tuple(len(values) for values in levels.values())
    if seed is CensusSeed.UNIFORM:
        return np.ones(shape)
    counts = np.full(shape, SAMPLE_SEED_FLOOR)
    codes = [
        pd.Categorical(respondents[name], categories=values).codes
        for name, values in levels.items()
    ]
    known = np.all([c >= 0 for c in codes], axis=0) if codes else np.zeros(0, dtype=bool)
    np.add.at(counts, tuple(c[known] for c in codes), 1.0)
    return counts


def _table_array(
    rows: pd.DataFrame, dims: Sequence[str], levels: Mapping[str, list[str]]
) -> np.ndarray:
    """A table's counts as an array over its demographics' levels (absent cells: 0)."""
    shape = tuple(len(levels[name]) for name in dims)
    array = np.zeros(shape)
    codes = tuple(pd.Categorical(rows[name], categories=levels[name]).codes for name in dims)
    np.add.at(array, codes, rows["population"].to_numpy(dtype=float))
    return array


def _build_market(
    market: str,
    rows: pd.DataFrame,
    respondents: pd.DataFrame,
    demographics: Sequence[str],
    seed: CensusSeed,
    tolerance: float,
    max_iterations: int,
) -> tuple[pd.DataFrame, MarketCensus]:
    levels = {name: sorted(rows[name].dropna().unique().tolist()) for name in demographics}
    tables = {
        str(name): (tuple(d for d in demographics if group[d].notna().all()), group)
        for name, group in rows.groupby("table", sort=True)
    }
    margins = [
        (tuple(demographics.index(d) for d in dims), _table_array(group, dims, levels))
        for dims, group in tables.values()
    ]
    start = _seed_array(seed, respondents, levels)
    total = float(np.mean([m.sum() for _, m in margins]))
    if total > 0:
        result = fit_joint(start, margins, tolerance=tolerance, max_iterations=max_iterations)
    else:
        result = IpfResult(np.zeros_like(start), 0, True)
    fits = []
    for (name, (dims, _)), (axes, given) in zip(tables.items(), margins, strict=True):
        other = tuple(i for i in range(len(demographics)) if i not in axes)
        deviation = float(np.abs(result.joint.sum(axis=other) - given).max())
        share = deviation / total if total > 0 else 0.0
        fits.append(
            TableFit(
                table=name,
                demographics=dims,
                max_abs_deviation=deviation,
                max_share_deviation=share,
            )
        )
    cells = list(itertools.product(*levels.values()))
    joint = pd.DataFrame(cells, columns=list(demographics))
    joint.insert(0, "market", market)
    joint["population"] = result.joint.reshape(-1)
    record = MarketCensus(
        market=market,
        total=float(result.joint.sum()),
        cells=len(joint),
        iterations=result.iterations,
        converged=result.converged,
        tables=tuple(fits),
    )
    return joint, record


def build_census(
    tables: pd.DataFrame,
    respondents: pd.DataFrame,
    demographics: Sequence[str],
    *,
    source: str,
    seed: CensusSeed,
    tolerance: float,
    max_iterations: int,
) -> BuiltCensus:
    """The joint of every market of validated census tables, and how well it fits them.

    Parameters
    ----------
    tables
        ``market``, ``table``, the demographics (str, None where a table does not cross
        one) and ``population`` (float), validated by :func:`census_table_problems`.
    respondents
        ``market`` and the demographics: the ``sample`` seed's counts.
    source
        The file the tables came from, for the report.
    seed, tolerance, max_iterations
        The config's ``census`` section.

    Examples
    --------
    A gender margin and an age margin of 100 people each, from a uniform seed:

    >>> tables = pd.DataFrame({
    ...     "market": ["DE"] * 4, "table": ["gender", "gender", "age", "age"],
    ...     "gender": ["f", "m", None, None], "age": [None, None, "old", "young"],
    ...     "population": [60.0, 40.0, 30.0, 70.0]})
    >>> built = build_census(tables, tables.iloc[:0], ("gender", "age"), source="t.csv",
    ...                      seed=CensusSeed.UNIFORM, tolerance=1e-9, max_iterations=100)
    >>> built.joint.round(6).to_dict("list")["population"]
    [18.0, 42.0, 12.0, 28.0]
    >>> built.report.markets[0].tables[0].max_abs_deviation < 1e-6
    True
    """
    demographics = list(demographics)
    joints, records = [], []
    for market, rows in tables.groupby("market", sort=True):
        people = respondents.loc[respondents["market"].eq(market)]
        joint, record = _build_market(
            str(market), rows, people, demographics, seed, tolerance, max_iterations
        )
        joints.append(joint)
        records.append(record)
    joint = pd.concat(joints, ignore_index=True)
    joint[demographics] = joint[demographics].astype(str)
    report = CensusReport(source=source, seed=seed, markets=tuple(records))
    return BuiltCensus(joint[["market", *demographics, "population"]], report)


def tables_of_joint(joint: pd.DataFrame, tables: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """The named tables (the demographics each crosses) of a joint, as ``census_tables`` rows.

    What a statistics office would publish from this joint: useful to check what a set of
    tables keeps of a known joint, and for tests and benches with a known truth.

    >>> joint = pd.DataFrame({"market": "DE", "gender": ["f", "f", "m", "m"],
    ...                       "age": ["y", "o", "y", "o"], "population": [1.0, 2.0, 3.0, 4.0]})
    >>> tables_of_joint(joint, {"gender": ["gender"]}).values.tolist()
    [['DE', 'gender', 'f', nan, 3.0], ['DE', 'gender', 'm', nan, 7.0]]
    """
    parts: list[pd.DataFrame] = []
    for name, dims in tables.items():
        part = joint.groupby(["market", *dims], as_index=False)["population"].sum()
        part.insert(1, "table", name)
        parts.append(pd.DataFrame(part))
    frame = pd.concat(parts, ignore_index=True)
    columns = ["market", "table", *[c for c in joint.columns if c not in ("market", "population")]]
    return pd.DataFrame(frame.reindex(columns=[*columns, "population"]))
