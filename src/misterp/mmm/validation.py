"""Read a media-mix input folder and validate it, reporting every problem at once.

The folder (local path or fsspec URL) holds ``kpi`` and ``media``, and optionally ``controls``
and ``lift_tests``, each as ``.csv`` or ``.parquet``. Per-file rules are the pandera schemas of
:mod:`misterp.mmm.schemas`; the rules of a weekly series (one weekday, no gaps, long enough for
the adstock and the seasonality) and across files (every media market has a KPI, every channel
spends something, lift tests name known channels and weeks) are coded here. Reading, the report,
its problems and the error are shared with the tracker (:mod:`misterp.inputs`), so both families
say "file, column, rows, fix" the same way. Nothing is ever written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from misterp.inputs import (
    InputTable,
    InputValidationError,
    ValidationProblem,
    ValidationReport,
    case_clashes,
    join_distinct,
    load_table,
    open_folder,
    schema_problems,
)
from misterp.mmm.brand import AlignedBrand, align_brand, read_trends
from misterp.mmm.config import BrandRole, MMMConfig
from misterp.mmm.schemas import (
    MMM_FILES,
    OPTIONAL_FILES,
    controls_schema,
    kpi_schema,
    lift_tests_schema,
    media_schema,
    parse_dates,
    parse_numbers,
)

__all__ = [
    "InputValidationError",
    "MMMData",
    "market_frame",
    "minimum_weeks",
    "read_mmm_input",
]

logger = logging.getLogger(__name__)

#: Ratio of typical magnitudes between two controls above which the report suggests scaling.
MAGNITUDE_RATIO = 1_000.0


def minimum_weeks(l_max: int, yearly_seasonality: int, n_channels: int, n_controls: int) -> int:
    """Fewest fitted weeks a market needs: twice its parameters plus the adstock window.

    With yearly seasonality the fit must also see a whole year, or the season and the media
    cannot be told apart.

    >>> minimum_weeks(8, 2, 4, 1)
    52
    >>> minimum_weeks(8, 0, 4, 1)
    38
    """
    parameters = 3 * n_channels + 2 * yearly_seasonality + n_controls + 2
    weeks = l_max + 2 * parameters
    return max(weeks, 52) if yearly_seasonality else weeks


@dataclass
class MMMData:
    """Validated input: clean typed frames, the markets' channels and what was dropped.

    ``notes`` are findings that do not stop the run (a dropped channel, controls of very
    different magnitudes); they are logged and written to the manifest.
    """

    kpi: pd.DataFrame
    media: pd.DataFrame
    controls: pd.DataFrame | None
    lift_tests: pd.DataFrame | None
    channels: dict[str, list[str]]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input_hashes: dict[str, str] = field(default_factory=dict)
    #: The tracker's brand metric per market and media week (``brand_link`` configured).
    brand: AlignedBrand | None = None

    @property
    def markets(self) -> list[str]:
        """Markets in the order of the KPI file."""
        return list(dict.fromkeys(self.kpi["market"]))

    @property
    def last_week(self) -> pd.Timestamp:
        """The latest week with a KPI."""
        return pd.Timestamp(self.kpi["date"].max())


def _typed(table: InputTable, numbers: Sequence[str], dates: Sequence[str]) -> pd.DataFrame:
    """The table's frame with dates and numbers parsed (index kept for row numbers)."""
    frame = table.frame.copy()
    for name in dates:
        frame[name] = parse_dates(frame[name])
    for name in numbers:
        if name in frame:
            frame[name] = parse_numbers(frame[name])
    return frame


def _span(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """``2023-03-13`` or ``2023-03-13 to 2023-03-27``."""
    return str(first.date()) if first == last else f"{first.date()} to {last.date()}"


def _weekly_problems(table: InputTable, frame: pd.DataFrame) -> list[ValidationProblem]:
    """Each market's weeks must fall on one weekday, 7 days apart, without gaps."""
    problems = []
    for market, group in frame.groupby("market", sort=False):
        dates = group["date"].drop_duplicates().sort_values()
        weekdays = dates.dt.day_name()
        usual = weekdays.mode().iloc[0]
        off = group.index[group["date"].dt.day_name().ne(usual)]
        if len(off):
            message = (
                f"market {market}: dates not on the weekly frequency (the other weeks start on "
                f"{usual}s): {join_distinct(str(d.date()) for d in group.loc[off, 'date'])}"
            )
            fix = f"date each week by its first day ({usual}), as the other rows do"
            problems.append(table.problem("date", off, message, fix))
            continue
        steps = dates.diff().dt.days.iloc[1:]
        gaps = [
            _span(before + pd.Timedelta(days=7), after - pd.Timedelta(days=7))
            for before, after, step in zip(dates.iloc[:-1], dates.iloc[1:], steps, strict=True)
            if step > 7
        ]
        if gaps:
            last_rows = group.index[group["date"].isin(dates.iloc[1:][steps.gt(7).to_numpy()])]
            message = f"market {market}: weeks missing: {join_distinct(gaps)}"
            fix = "add the missing weeks (with 0 where there was nothing)"
            problems.append(table.problem("date", last_rows, message, fix))
    return problems


def _coverage_problems(
    kpi: InputTable, kpi_frame: pd.DataFrame, media: InputTable, media_frame: pd.DataFrame
) -> list[ValidationProblem]:
    """Markets on both sides; every channel has a spend row for every KPI week."""
    problems = []
    kpi_markets = set(kpi_frame["market"])
    media_markets = set(media_frame["market"])
    only_media = media_frame.index[~media_frame["market"].isin(kpi_markets)]
    if len(only_media):
        markets = join_distinct(sorted(set(media_frame.loc[only_media, "market"])))
        message = f"market(s) {markets} have media but no rows in {kpi.name}"
        fix = f"add their weekly KPI to {kpi.name}, or drop their media rows"
        problems.append(media.problem("market", only_media, message, fix))
    only_kpi = kpi_frame.index[~kpi_frame["market"].isin(media_markets)]
    if len(only_kpi):
        markets = join_distinct(sorted(set(kpi_frame.loc[only_kpi, "market"])))
        message = f"market(s) {markets} have a KPI but no rows in {media.name}"
        fix = f"add their spend to {media.name}, or drop their KPI rows"
        problems.append(kpi.problem("market", only_kpi, message, fix))
    for market, weeks in kpi_frame.groupby("market")["date"]:
        rows = media_frame[media_frame["market"] == market]
        for channel, spent in rows.groupby("channel")["date"]:
            missing = sorted(set(weeks) - set(spent))
            if missing:
                message = (
                    f"market {market}, channel {channel}: no spend row for {len(missing)} "
                    f"KPI week(s): {join_distinct(str(d.date()) for d in missing)}"
                )
                fix = "add a row for every KPI week (spend 0 for weeks without any)"
                problems.append(media.problem("channel", spent.index, message, fix))
    return problems


def _zero_spend(
    media: InputTable, frame: pd.DataFrame, drop: bool
) -> tuple[list[ValidationProblem], dict[str, list[str]], list[str]]:
    """Channels without any spend in a market: refused, or dropped when configured."""
    totals = frame.groupby(["market", "channel"], sort=False)["spend"].sum()
    problems: list[ValidationProblem] = []
    dropped: dict[str, list[str]] = {}
    notes: list[str] = []
    for key, total in totals.items():
        market, channel = (str(part) for part in key)  # type: ignore[attr-defined]
        if total > 0:
            continue
        rows = frame.index[(frame["market"] == market) & (frame["channel"] == channel)]
        if drop:
            dropped.setdefault(str(market), []).append(str(channel))
            notes.append(f"market {market}: channel {channel} has no spend and was dropped")
            continue
        message = f"market {market}: channel {channel} has zero spend in every week"
        fix = (
            "its effect cannot be estimated: remove its rows, fix the export, or set "
            "drop_zero_spend_channels: true in the config"
        )
        problems.append(media.problem("spend", rows, message, fix))
    return problems, dropped, notes


def _length_problems(
    kpi: InputTable, frame: pd.DataFrame, config: MMMConfig, channels: dict[str, list[str]]
) -> list[ValidationProblem]:
    """A market must have enough weeks left after the holdout for its parameters."""
    problems = []
    for market, group in frame.groupby("market", sort=False):
        need = minimum_weeks(
            config.l_max,
            config.yearly_seasonality,
            len(channels.get(str(market), [])),
            len(config.controls) + int(config.trend),
        )
        n_channels = len(channels.get(str(market), []))
        fitted = group["date"].nunique() - config.holdout_weeks
        if fitted < need:
            message = (
                f"market {market}: {fitted} weeks to fit after the {config.holdout_weeks}-week "
                f"holdout, fewer than the {need} that l_max {config.l_max}, yearly_seasonality "
                f"{config.yearly_seasonality} and {n_channels} channels need"
            )
            fix = (
                "deliver more weeks, or lower holdout_weeks, l_max or yearly_seasonality "
                "in the config"
            )
            problems.append(kpi.problem("date", group.index, message, fix))
    return problems


def _lift_problems(
    lift: InputTable, frame: pd.DataFrame, media: pd.DataFrame
) -> list[ValidationProblem]:
    """Lift tests must name a channel of their market and lie within its weeks."""
    problems = []
    known = set(zip(media["market"], media["channel"], strict=True))
    unknown = frame.index[
        [(m, c) not in known for m, c in zip(frame["market"], frame["channel"], strict=True)]
    ]
    if len(unknown):
        pairs = join_distinct(
            f"{c} in {m}" for m, c in frame.loc[unknown, ["market", "channel"]].values
        )
        message = f"lift tests of channels without media rows: {pairs}"
        fix = "fix the market or channel to one in the media file, or drop the test"
        problems.append(lift.problem("channel", unknown, message, fix))
    spans = media.groupby("market")["date"].agg(["min", "max"])
    outside = [
        i
        for i, row in frame.iterrows()
        if row["market"] in spans.index
        and (
            row["start"] < spans.loc[row["market"], "min"]
            or row["end"] > spans.loc[row["market"], "max"] + pd.Timedelta(days=6)
            or row["end"] < row["start"]
        )
    ]
    if outside:
        message = "lift tests outside the weeks of their market's data (or ending before start)"
        fix = "keep tests whose start and end lie within the data, start <= end"
        problems.append(lift.problem("start", outside, message, fix))
    return problems


def _magnitude_notes(frame: pd.DataFrame, controls: Sequence[str]) -> list[str]:
    """Controls whose typical sizes differ by more than ``MAGNITUDE_RATIO``.

    misterp divides each control by its largest absolute value before the fit, so this is no
    error; it is said because such inputs are often a unit mistake (cents next to an index).
    """
    sizes = {name: float(frame[name].abs().median()) for name in controls}
    positive = {name: size for name, size in sizes.items() if size > 0}
    if len(positive) < 2:
        return []
    small, large = min(positive, key=positive.__getitem__), max(positive, key=positive.__getitem__)
    if positive[large] / positive[small] <= MAGNITUDE_RATIO:
        return []
    return [
        f"controls of wildly different magnitudes: '{large}' is typically {positive[large]:.3g}, "
        f"'{small}' {positive[small]:.3g}; misterp scales each by its largest |value| before "
        "fitting, but check the units (scale them to comparable units if one is a mistake)"
    ]


def read_mmm_input(config: MMMConfig) -> MMMData:
    """Read and validate the config's input folder; raise one error listing every problem.

    Raises
    ------
    InputValidationError
        With ``.report`` listing every problem of every file, each with file, column, rows and
        the fix.
    """
    fs, root = open_folder(config.input, config.storage_options)
    problems: list[ValidationProblem] = []
    hashes: dict[str, str] = {}
    tables: dict[str, InputTable | None] = {"kpi": None}
    link = config.brand_link
    brand_is_kpi = link is not None and link.role is BrandRole.KPI
    schemas: dict[str, pa.DataFrameSchema] = {
        "kpi": kpi_schema(),
        "media": media_schema(),
        "controls": controls_schema(list(config.controls)),
        "lift_tests": lift_tests_schema(),
    }
    for role in MMM_FILES:
        if role == "kpi" and brand_is_kpi:
            continue  # the KPI is the tracker's brand metric, aligned below
        tables[role] = table = load_table(
            fs, root, role, problems, optional=role in OPTIONAL_FILES, hashes=hashes
        )
        if table is None:
            continue
        schema = schemas[role]
        if role == "media" and "impressions" not in table.frame.columns:
            schema = schema.remove_columns(["impressions"])
        file_problems = schema_problems(table, schema)
        # markets and channels name the run's files (fits/MARKET.json, ...)
        file_problems += case_clashes(table, "market", what="markets")
        if role == "media":
            file_problems += case_clashes(table, "channel", within=("market",), what="channels")
        problems += file_problems
        if file_problems:
            tables[role] = None  # cross-file rules need clean files; fix these first
    if (
        config.controls
        and tables.get("controls") is None
        and not any(p.file.startswith("controls") for p in problems)
    ):
        fix = "add controls.csv with date, market and these columns, or remove them from the config"
        problems.append(
            ValidationProblem(
                "controls.{csv,parquet}",
                None,
                [],
                f"missing file, but the config names controls {config.controls}",
                fix,
            )
        )

    kpi, media = tables["kpi"], tables["media"]
    controls, lift = tables["controls"], tables["lift_tests"]
    channels: dict[str, list[str]] = {}
    dropped: dict[str, list[str]] = {}
    notes: list[str] = []
    kpi_frame = media_frame = control_frame = lift_frame = None
    if kpi is not None:
        kpi_frame = _typed(kpi, ["kpi"], ["date"])
        problems += _weekly_problems(kpi, kpi_frame)
    if media is not None:
        media_frame = _typed(media, ["spend", "impressions"], ["date"])
        zero, dropped, notes = _zero_spend(media, media_frame, config.drop_zero_spend_channels)
        problems += zero
        for market, group in media_frame.groupby("market", sort=False):
            gone = dropped.get(str(market), [])
            kept = [c for c in dict.fromkeys(group["channel"]) if c not in gone]
            channels[str(market)] = kept
    if kpi is not None and media is not None and kpi_frame is not None and media_frame is not None:
        problems += _coverage_problems(kpi, kpi_frame, media, media_frame)
        problems += _length_problems(kpi, kpi_frame, config, channels)
    brand: AlignedBrand | None = None
    if link is not None and media_frame is not None:
        if brand_is_kpi and media is not None:
            weekly = _weekly_problems(media, media_frame)
            problems += weekly + _length_problems(media, media_frame, config, channels)
        source = kpi_frame if kpi_frame is not None else media_frame
        weeks = {str(m): g.drop_duplicates() for m, g in source.groupby("market")["date"]}
        trends, name, sha, found = read_trends(link, config.storage_options)
        problems += found
        if trends is not None:
            brand, found = align_brand(link, trends, name, sha, weeks)
            problems += found
        if brand is not None:
            hashes[f"brand_link:{name}"] = brand.sha256
            notes += brand.notes
            if brand_is_kpi:
                kpi_frame = brand.frame[["date", "market"]].assign(kpi=brand.frame["mean"])
    if controls is not None and config.controls:
        control_frame = _typed(controls, list(config.controls), ["date"])
        notes += _magnitude_notes(control_frame, config.controls)
        if kpi_frame is not None:
            have = set(zip(control_frame["market"], control_frame["date"], strict=True))
            missing = kpi_frame.index[
                [
                    (m, d) not in have
                    for m, d in zip(kpi_frame["market"], kpi_frame["date"], strict=True)
                ]
            ]
            if len(missing):
                message = f"KPI weeks without a row in {controls.name}"
                fix = f"add a row to {controls.name} for every market and week of the KPI"
                if kpi is not None:
                    problems.append(kpi.problem("date", missing, message, fix))
                else:
                    absent = kpi_frame.loc[missing, ["market", "date"]].to_numpy()
                    weeks_missing = join_distinct(
                        f"{m} {pd.Timestamp(d).date()}" for m, d in absent
                    )
                    problems.append(
                        ValidationProblem(
                            controls.name, "date", [], f"{message}: {weeks_missing}", fix
                        )
                    )
    if lift is not None and media_frame is not None:
        lift_frame = _typed(lift, ["x", "delta_x", "delta_y", "sigma"], ["start", "end"])
        problems += _lift_problems(lift, lift_frame, media_frame)

    order = {name: i for i, name in enumerate(MMM_FILES)}
    problems.sort(key=lambda problem: order.get(problem.file.split(".")[0], len(order)))
    if problems:
        raise InputValidationError(ValidationReport(problems))
    assert kpi_frame is not None
    assert media_frame is not None
    for note in notes:
        logger.warning("%s", note)
    keep = ~media_frame.set_index(["market", "channel"]).index.isin(
        [(m, c) for m, cs in dropped.items() for c in cs]
    )
    data = MMMData(
        kpi=kpi_frame[["date", "market", "kpi"]]
        .sort_values(["market", "date"])
        .reset_index(drop=True),
        media=media_frame.loc[keep].reset_index(drop=True),
        controls=None
        if control_frame is None
        else control_frame[["date", "market", *config.controls]].reset_index(drop=True),
        lift_tests=lift_frame.reset_index(drop=True) if lift_frame is not None else None,
        channels=channels,
        dropped=dropped,
        notes=notes,
        input_hashes=hashes,
        brand=brand,
    )
    logger.info(
        "read media-mix input %s: %d markets, %d weeks up to %s",
        config.input,
        len(data.markets),
        data.kpi["date"].nunique(),
        data.last_week.date(),
    )
    return data


def market_frame(data: MMMData, market: str, controls: Sequence[str]) -> pd.DataFrame:
    """One market as the model reads it: date, kpi, one spend column per channel, controls."""
    kpi = data.kpi[data.kpi["market"] == market][["date", "kpi"]]
    media = data.media[data.media["market"] == market]
    wide = media.pivot(index="date", columns="channel", values="spend")[data.channels[market]]
    frame = kpi.merge(wide.reset_index(), on="date", how="left")
    if controls and data.controls is not None:
        rows = data.controls[data.controls["market"] == market][["date", *controls]]
        frame = frame.merge(rows, on="date", how="left")
    frame.columns.name = None
    return frame.sort_values("date").reset_index(drop=True)
