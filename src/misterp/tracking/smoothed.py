"""A wave's smoothed trend (``OUTPUT/WAVE/smoothed.parquet``), from the last waves' estimates.

With ``tracking.smoothing.enabled``, the tracking step reads the published estimates of the
last ``window`` complete waves (this one included), each estimate's posterior mean and sd (its
draws' summaries, as ``estimates.parquet`` stores them: one small file per wave, so memory and
time stay flat in the size of the draws) and smooths them with the local-level model of
:mod:`misterp.tracking.smoothing`. The table has, for every estimate of this wave and every
wave of the window, the smoothed level with its interval and the smoothed change from the wave
before with P(up), P(down) and a flag at ``change_probability``. It stands beside
``changes.parquet`` and never replaces it.

An estimate's series starts after the last wave of the window that is not like for like with
this one (model missing, formula, base, priors, census or target group definition changed),
as the raw changes would say ``comparable`` false across it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import ConfigError
from misterp.mrp.config import TrackingConfig
from misterp.mrp.records import CENSUS_HASH_PREFIX, Manifest, check_estimates
from misterp.periods import detect_period, parse_period
from misterp.storage import ResultStore
from misterp.tracking.catalog import read_manifest, wave_folders
from misterp.tracking.changes import ChangeFlag, flag_threshold, priors_of
from misterp.tracking.smoothing import local_level

__all__ = [
    "SMOOTHED_COLUMNS",
    "SMOOTHED_FILE",
    "SmoothingWindowError",
    "check_smoothing_window",
    "smoothing_window",
    "wave_smoothing",
]

logger = logging.getLogger(__name__)

#: Where a wave's smoothed trend is published, relative to the wave folder.
SMOOTHED_FILE = "smoothed.parquet"

#: Columns of ``smoothed.parquet``, in order. ``wave`` is the wave published (whose data the
#: smoothing saw), ``level_wave`` the wave the row's level and change are for.
SMOOTHED_COLUMNS: tuple[str, ...] = (
    "wave",
    "level_wave",
    "market",
    "question_id",
    "option",
    "brand",
    "target_group",
    "raw_mean",
    "raw_sd",
    "level",
    "level_lower",
    "level_upper",
    "change",
    "change_lower",
    "change_upper",
    "p_up",
    "p_down",
    "flag",
    "drift_sd",
    "waves_used",
)

_KEY = ["market", "question_id", "option", "target_group"]


class SmoothingWindowError(ConfigError):
    """``tracking.smoothing.window`` asks for more waves than are published."""


def smoothing_window(store: ResultStore, wave: str, tracking: TrackingConfig) -> list[str]:
    """The waves smoothed with ``wave``: it and the complete waves before it, oldest first.

    At most ``tracking.smoothing.window`` waves of the same period kind.

    Raises
    ------
    SmoothingWindowError
        Fewer complete waves than the window (``wave`` counts, complete or not yet).
    ConfigError
        ``wave`` is not a period of ``tracking.period``.
    """
    period = parse_period(wave, tracking.period)
    window = tracking.smoothing.window
    earlier = []
    for name in wave_folders(store):
        other = detect_period(name)
        if other is not None and other.kind == period.kind and other.start < period.start:
            earlier.append(other)
    complete = [p.id for p in sorted(earlier, reverse=True) if store.is_complete(p.id)]
    published = len(complete) + 1
    if published < window:
        raise SmoothingWindowError(
            f"tracking.smoothing.window is {window} waves, but {published} "
            f"{'is' if published == 1 else 'are'} published in {store.root_uri} with wave "
            f"{wave} ({', '.join([*reversed(complete), wave])}); "
            + (
                f"set tracking.smoothing.window to {published} or less, or "
                if published >= 2
                else ""
            )
            + "turn smoothing off (tracking.smoothing.enabled: false) until "
            f"{window} waves are published"
        )
    return [*reversed(complete[: window - 1]), wave]


def check_smoothing_window(store: ResultStore, wave: str, tracking: TrackingConfig) -> None:
    """Refuse a run whose smoothing window is longer than the waves published (before a write).

    Nothing to check with smoothing off, or for a wave id that is no period (tracking skips it).
    """
    if not tracking.smoothing.enabled or detect_period(wave) is None:
        return
    smoothing_window(store, wave, tracking)


@dataclass(frozen=True)
class _Published:
    """One wave of the window: what makes its estimates comparable, and the estimates."""

    wave: str
    specs: dict[str, dict[str, Any]]  # "market/question/option" -> spec
    target_groups: dict[str, Any]
    census: dict[str, str]
    priors: dict[str, Any] | None
    estimates: pd.DataFrame

    @classmethod
    def read(cls, store: ResultStore, manifest: Manifest) -> _Published:
        data = store.read_bytes(f"{manifest.wave}/estimates.parquet")
        check_estimates(manifest, data, store.uri(f"{manifest.wave}/estimates.parquet"))
        estimates = store.read_parquet(f"{manifest.wave}/estimates.parquet")
        hashes = manifest.input_hashes
        census = {
            k.removeprefix(CENSUS_HASH_PREFIX): v
            for k, v in hashes.items()
            if k.startswith(CENSUS_HASH_PREFIX)
        }
        return cls(
            wave=manifest.wave,
            specs={model.key: dict(model.spec) for model in manifest.models},
            target_groups=dict(manifest.config.get("target_groups") or {}),
            census=census or {"": hashes.get("poststrat", "")},
            priors=priors_of(manifest.config),
            estimates=estimates,
        )

    def census_of(self, market: str) -> str | None:
        return self.census.get(market, self.census.get(""))


def _comparable(this: _Published, other: _Published, keys: pd.DataFrame) -> np.ndarray:
    """Per estimate of ``this`` (rows of ``keys``), whether ``other``'s is like for like."""
    priors_differ = None not in (other.priors, this.priors) and other.priors != this.priors
    result = np.zeros(len(keys), dtype=bool)
    if priors_differ:
        return result
    for i, (market, question, option, group) in enumerate(keys[_KEY].itertuples(index=False)):
        key = f"{market}/{question}/{option}"
        spec, then = this.specs.get(key), other.specs.get(key)
        if spec is None or then is None:
            continue
        if any(spec.get(f) != then.get(f) for f in ("formula", "base_question", "base_option")):
            continue
        if other.census_of(str(market)) != this.census_of(str(market)):
            continue
        if group != "all" and other.target_groups.get(group) != this.target_groups.get(group):
            continue
        result[i] = True
    return result


#: The 90% interval q05..q95 of a normal posterior is this many sds wide.
_Q05_Q95_SDS = 2 * 1.6448536269514722


def _sds(estimates: pd.DataFrame) -> np.ndarray:
    """The posterior sds of the estimates; from their q05..q95 where no ``sd`` was published.

    Waves published before ``estimates.parquet`` had an ``sd`` column have the fixed 5th and
    95th percentiles, whose distance is 3.29 sds of a normal posterior.
    """
    if "sd" in estimates:
        return pd.to_numeric(estimates["sd"], errors="coerce").to_numpy(dtype=float)
    q05 = pd.to_numeric(estimates["q05"], errors="coerce").to_numpy(dtype=float)
    q95 = pd.to_numeric(estimates["q95"], errors="coerce").to_numpy(dtype=float)
    return (q95 - q05) / _Q05_Q95_SDS


def wave_smoothing(
    store: ResultStore, wave: str, tracking: TrackingConfig | None = None
) -> pd.DataFrame:
    """The smoothed trend of every estimate of ``wave`` over its window, ``SMOOTHED_COLUMNS``.

    Raises ``SmoothingWindowError`` when fewer waves are published than the window, and
    ``ConfigError`` for a wave that is not complete or not a period.
    """
    manifest = read_manifest(store, wave)
    if manifest is None:
        raise ConfigError(f"wave '{wave}' is not complete; nothing to smooth")
    if tracking is None:
        tracking = TrackingConfig.model_validate(manifest.config.get("tracking") or {})
    names = smoothing_window(store, wave, tracking)
    waves: list[_Published] = []
    for name in names:
        found = manifest if name == wave else read_manifest(store, name)
        if found is None:
            raise ConfigError(f"wave '{name}' became incomplete while being read")
        waves.append(_Published.read(store, found))
    this = waves[-1]
    keys = this.estimates.drop_duplicates(_KEY).reset_index(drop=True)
    index = pd.MultiIndex.from_frame(keys[_KEY].astype(str))
    means = np.full((len(keys), len(waves)), np.nan)
    sds = np.full_like(means, np.nan)
    cut = np.full(len(keys), -1)  # the last wave not like for like, per estimate
    for t, other in enumerate(waves):
        frame = other.estimates.drop_duplicates(_KEY)
        indexed = frame.set_index(pd.MultiIndex.from_frame(frame[_KEY].astype(str)))
        aligned = indexed.reindex(index)
        means[:, t] = pd.to_numeric(aligned["mean"], errors="coerce").to_numpy(dtype=float)
        sds[:, t] = _sds(aligned)
        if other is not this:
            cut = np.where(_comparable(this, other, keys), cut, t)
    dropped = np.arange(len(waves))[None, :] <= cut[:, None]
    means[dropped] = np.nan
    sds[dropped] = np.nan
    series = local_level(means, sds)
    lower, upper = series.level_interval(tracking.interval)
    change_lower, change_upper = series.change_interval(tracking.interval)
    p_up, p_down = series.p_up(), series.p_down()
    threshold = flag_threshold(tracking.change_probability)
    flag = np.where(
        p_up >= threshold,
        ChangeFlag.UP.value,
        np.where(p_down >= threshold, ChangeFlag.DOWN.value, ChangeFlag.STEADY.value),
    ).astype(object)
    flag[np.isnan(series.change_mean)] = None
    used = np.isfinite(means).sum(axis=1)
    rows = len(waves)
    frame = pd.DataFrame(
        {
            "wave": wave,
            "level_wave": np.tile(names, len(keys)),
            "market": np.repeat(keys["market"].to_numpy(dtype=object), rows),
            "question_id": np.repeat(keys["question_id"].to_numpy(dtype=object), rows),
            "option": np.repeat(keys["option"].to_numpy(dtype=object), rows),
            "brand": np.repeat(keys["brand"].to_numpy(dtype=object), rows)
            if "brand" in keys
            else None,
            "target_group": np.repeat(keys["target_group"].to_numpy(dtype=object), rows),
            "raw_mean": means.ravel(),
            "raw_sd": sds.ravel(),
            "level": series.level_mean.ravel(),
            "level_lower": lower.ravel(),
            "level_upper": upper.ravel(),
            "change": series.change_mean.ravel(),
            "change_lower": change_lower.ravel(),
            "change_upper": change_upper.ravel(),
            "p_up": p_up.ravel(),
            "p_down": p_down.ravel(),
            "flag": pd.Series(flag.ravel(), dtype=object),
            "drift_sd": series.drift_sd,
            "waves_used": np.repeat(used, rows).astype(np.int64),
        },
        columns=list(SMOOTHED_COLUMNS),
    )
    logger.info(
        "wave %s: smoothed %d estimates over %d waves (learnt drift sd %.4f)",
        wave,
        len(keys),
        len(waves),
        series.drift_sd,
    )
    return frame
