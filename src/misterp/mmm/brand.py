"""The brand link: a metric of the tracker's ``trends.parquet`` aligned to the media weeks.

The tracker publishes one row per wave (a period, usually a month), market, question, option and
target group with the posterior mean and 90 % interval (``q05``, ``q95``). A media-mix model
works in weeks. Here the chosen metric is read, checked and turned into one value per market and
media week, with its standard error, either as the model's KPI or as a control.

Alignment (:func:`week_waves`): each week takes the estimate of the wave whose reporting period
(``period_start`` to ``period_end``, both inclusive) contains the week's middle day (its start
plus three days), i.e. the period holding at least four of its seven days. A survey wave
estimates the level over its period; it says nothing of a path within the month, so a step per
period claims no more than was measured, where interpolating between period midpoints would
invent a within-month trajectory and would have to extrapolate before the first and after the
last midpoint. Weeks no period contains are refused, never filled.

Uncertainty (:func:`trend_draws`): the tracker's estimate is a posterior, not a measurement
without error. pymc-marketing 1.3's ``MMM`` has one likelihood ``sigma`` for all weeks and no
way to add a known per-week error to it, so the error is propagated by composition: the market
is fitted on ``uncertainty_draws`` series drawn from the tracker's posterior and the posteriors
are pooled (:func:`misterp.mmm.run.mixture_functions`), which approximates the posterior of the
media effects averaged over what the awareness could have been. Each wave's draw is
``mean + sd * z`` with one ``z ~ N(0, 1)`` per wave (waves are separate samples, fitted
separately, so their errors are independent), shared by the weeks of that wave, floored at 0.
``sd`` comes from the 90 % interval as if the posterior were normal, which at tracker sample
sizes it nearly is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pandas as pd

from misterp.inputs import ValidationProblem, join_distinct
from misterp.mmm.config import BrandLink
from misterp.storage import as_store_unavailable

__all__ = [
    "TRENDS_INTERVAL",
    "AlignedBrand",
    "align_brand",
    "interval_sd",
    "read_trends",
    "trend_draws",
    "trends_uri",
    "week_waves",
]

#: The interval the tracker publishes in ``q05``/``q95``.
TRENDS_INTERVAL = 0.90
#: Columns of trends.parquet the link reads.
_NEEDED = (
    "wave",
    "period_start",
    "period_end",
    "market",
    "question_id",
    "option",
    "target_group",
    "mean",
    "q05",
    "q95",
)
#: Column of the aligned frame that holds the weekly value.
VALUE = "mean"


def trends_uri(link: BrandLink) -> str:
    """``link.trends`` itself when it names a parquet file, else ``ROOT/trends.parquet``."""
    uri = link.trends.rstrip("/")
    return uri if uri.endswith(".parquet") else f"{uri}/trends.parquet"


def interval_sd(
    lower: np.ndarray, upper: np.ndarray, interval: float = TRENDS_INTERVAL
) -> np.ndarray:
    """Standard deviation of a normal whose equal-tailed ``interval`` is ``[lower, upper]``.

    >>> round(float(interval_sd(np.array([0.5 - 1.6448536]), np.array([0.5 + 1.6448536]))[0]), 6)
    1.0
    """
    z = float(_normal_quantile(0.5 + interval / 2))
    return (np.asarray(upper, dtype=float) - np.asarray(lower, dtype=float)) / (2 * z)


def _normal_quantile(p: float) -> float:
    from scipy.stats import norm  # type: ignore[import-untyped]

    return float(norm.ppf(p))


def week_waves(weeks: pd.Series, starts: pd.Series, ends: pd.Series) -> np.ndarray:
    """For each week, the position of the period containing its middle day; -1 none, -2 several.

    >>> weeks = pd.Series(pd.to_datetime(["2025-01-27", "2025-02-03", "2025-03-03"]))
    >>> starts = pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01"]))
    >>> ends = pd.Series(pd.to_datetime(["2025-01-31", "2025-02-28"]))
    >>> week_waves(weeks, starts, ends).tolist()
    [0, 1, -1]
    """
    middle = pd.to_datetime(weeks).to_numpy()[:, None] + np.timedelta64(3, "D")
    inside = (middle >= pd.to_datetime(starts).to_numpy()[None, :]) & (
        middle <= pd.to_datetime(ends).to_numpy()[None, :]
    )
    position = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    return np.where(inside.sum(axis=1) > 1, -2, position)


@dataclass
class AlignedBrand:
    """The metric per market and media week: ``date, market, wave, mean, sd``."""

    frame: pd.DataFrame
    file: str
    sha256: str
    notes: list[str] = field(default_factory=list)

    def market(self, market: str) -> pd.DataFrame:
        """One market's weeks in date order."""
        rows = self.frame[self.frame["market"] == market]
        return rows.sort_values("date").reset_index(drop=True)


def read_trends(
    link: BrandLink, storage_options: Mapping[str, object]
) -> tuple[pd.DataFrame | None, str, str, list[ValidationProblem]]:
    """The trend table, its file name and sha256, or None and why it cannot be used."""
    uri = trends_uri(link)
    name = uri.rsplit("/", 1)[-1]
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    fix = "point brand_link.trends at the tracker's results root or its trends.parquet"
    with as_store_unavailable(uri, "reading the brand trends", any_os_error=False):
        if not fs.exists(path):
            return None, name, "", [ValidationProblem(uri, None, [], "not found", fix)]
        data = fs.cat_file(path)
    try:
        frame = pd.read_parquet(fs.open(path, "rb"))
    except (OSError, ValueError) as exc:
        problem = ValidationProblem(uri, None, [], f"cannot be read as parquet: {exc}", fix)
        return None, name, "", [problem]
    missing = [c for c in _NEEDED if c not in frame.columns]
    if missing:
        message = (
            f"missing column(s) {join_distinct(missing)}; is this the tracker's trends.parquet?"
        )
        return None, name, "", [ValidationProblem(uri, None, [], message, fix)]
    return frame, name, hashlib.sha256(data).hexdigest(), []


def _choice(
    frame: pd.DataFrame, column: str, wanted: str, name: str, key: str, scope: str
) -> list[ValidationProblem]:
    """A problem naming the available values when ``wanted`` is not among them."""
    if wanted in set(frame[column].astype(str)):
        return []
    have = sorted(set(frame[column].astype(str)))
    shown = join_distinct(have[:12]) + (f" and {len(have) - 12} more" if len(have) > 12 else "")
    message = f"no rows with {column} '{wanted}'{scope}; it has {shown or 'none'}"
    return [ValidationProblem(name, column, [], message, f"set brand_link.{key} to one of these")]


def align_brand(
    link: BrandLink, trends: pd.DataFrame, name: str, sha256: str, weeks: Mapping[str, pd.Series]
) -> tuple[AlignedBrand | None, list[ValidationProblem]]:
    """The metric of ``link`` for every market and week in ``weeks``, or every problem found.

    Parameters
    ----------
    link
        The configured metric.
    trends
        The tracker's trend table.
    name
        Its file name, for messages.
    sha256
        Its content hash (goes into the run's input hashes).
    weeks
        Per media-mix market, the start dates of its media weeks.
    """
    frame = trends.reset_index(drop=True)
    rows = frame.index + 1  # parquet rows are 1-based positions
    frame = frame.assign(_row=rows)
    problems = _choice(frame, "question_id", link.question_id, name, "question_id", "")
    if problems:
        return None, problems
    frame = frame[frame["question_id"].astype(str) == link.question_id]
    scope = f" for question {link.question_id}"
    problems += _choice(frame, "option", link.option, name, "option", scope)
    problems += _choice(frame, "target_group", link.target_group, name, "target_group", scope)
    if problems:
        return None, problems
    frame = frame[
        (frame["option"].astype(str) == link.option)
        & (frame["target_group"].astype(str) == link.target_group)
    ]
    notes: list[str] = []
    parts = []
    what = f"{link.question_id}/{link.option}/{link.target_group}"
    for market, media_weeks in weeks.items():
        rows_m = frame[frame["market"].astype(str) == market]
        if rows_m.empty:
            have = join_distinct(sorted(set(frame["market"].astype(str)))) or "none"
            message = f"no rows of {what} for market {market}; markets with it: {have}"
            fix = "track the market in the survey, or leave it out of the config (markets)"
            problems.append(ValidationProblem(name, "market", [], message, fix))
            continue
        duplicated = rows_m[rows_m.duplicated("period_start", keep=False)]
        if len(duplicated):
            message = f"market {market}: {what} has several rows for one period"
            fix = "rebuild the trend table (misterp rebuilds it from the complete waves)"
            problems.append(ValidationProblem(name, "wave", list(duplicated["_row"]), message, fix))
            continue
        rows_m = rows_m.sort_values("period_start").reset_index(drop=True)
        dates = pd.Series(pd.to_datetime(media_weeks)).sort_values().reset_index(drop=True)
        position = week_waves(dates, rows_m["period_start"], rows_m["period_end"])
        uncovered = dates[position == -1]
        if len(uncovered):
            covered = (
                f"{pd.Timestamp(rows_m['period_start'].min()).date()} to "
                f"{pd.Timestamp(rows_m['period_end'].max()).date()}"
            )
            message = (
                f"market {market}: {len(uncovered)} media week(s) outside every wave of {what} "
                f"(waves cover {covered}): {join_distinct(str(d.date()) for d in uncovered)}"
            )
            fix = (
                "publish the tracker's waves for these weeks, or cut kpi/media/controls to the "
                "weeks the waves cover"
            )
            problems.append(ValidationProblem(name, "period_start", [], message, fix))
            continue
        if (position == -2).any():
            message = f"market {market}: waves of {what} with overlapping periods"
            fix = "keep one wave kind (e.g. monthly) in the trend table"
            problems.append(ValidationProblem(name, "period_start", [], message, fix))
            continue
        chosen = rows_m.iloc[position]
        if "status" in chosen and not chosen["status"].eq("converged").all():
            flagged = sorted(set(chosen.loc[chosen["status"] != "converged", "wave"].astype(str)))
            notes.append(
                f"brand link, market {market}: waves {join_distinct(flagged)} not converged"
            )
        sd = interval_sd(chosen["q05"].to_numpy(), chosen["q95"].to_numpy())
        parts.append(
            pd.DataFrame(
                {
                    "date": dates.to_numpy(),
                    "market": market,
                    "wave": chosen["wave"].astype(str).to_numpy(),
                    VALUE: chosen["mean"].to_numpy(dtype=float),
                    "sd": np.clip(sd, 0.0, None),
                }
            )
        )
    if problems:
        return None, problems
    aligned = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return AlignedBrand(aligned, name, sha256, notes), []


def trend_draws(aligned: pd.DataFrame, n_draws: int, seed: int) -> np.ndarray:
    """``(n_draws, weeks)`` series from the tracker's posterior: one ``z`` per wave and draw.

    >>> weeks = pd.DataFrame({"wave": ["a", "a", "b"], "mean": [0.5, 0.5, 0.6], "sd": [0, 0, 0]})
    >>> trend_draws(weeks, 2, 1).tolist()
    [[0.5, 0.5, 0.6], [0.5, 0.5, 0.6]]
    """
    rng = np.random.default_rng(seed)
    waves, index = np.unique(aligned["wave"].to_numpy(), return_inverse=True)
    z = rng.standard_normal((n_draws, len(waves)))[:, index]
    mean = aligned[VALUE].to_numpy(dtype=float)[None, :]
    sd = aligned["sd"].to_numpy(dtype=float)[None, :]
    return np.clip(mean + sd * z, 0.0, None)
