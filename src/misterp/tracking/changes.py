"""Changes between waves with their probability, computed draw-wise from the stored draws.

Every published model has its poststratified posterior draws on file, the same number for
every model of a wave. The change of a share between two waves is summarised from the draws
of the difference, not from the two summaries, so its interval and P(up) carry both waves'
uncertainty exactly, whatever the shape of either posterior.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import ConfigError
from misterp.mrp.config import TrackingConfig
from misterp.mrp.poststratify import draws_by_group
from misterp.mrp.records import CENSUS_HASH_PREFIX, Manifest, ManifestModel
from misterp.periods import WavePeriod, detect_period, parse_period
from misterp.status import FitStatus
from misterp.storage import ResultStore
from misterp.tracking.catalog import read_manifest, wave_folders
from misterp.tracking.flags import describe_rule, flag_comparisons

__all__ = [
    "CHANGES_FILE",
    "CHANGE_COLUMNS",
    "ChangeFlag",
    "ChangeSummary",
    "ReferenceWaveError",
    "apply_flag_rule",
    "compare_draws",
    "later_waves_referencing",
    "tracking_of",
    "wave_changes",
    "write_changes",
]

logger = logging.getLogger(__name__)

#: Threads reading draws files ahead (I/O-bound: S3 GETs, parquet decoding).
_READERS = 8
#: Models whose draws are read ahead at a time (bounds memory).
_BATCH = 64

#: Where a wave's changes are published, relative to the wave folder.
CHANGES_FILE = "changes.parquet"

#: Columns of ``changes.parquet``, in order.
CHANGE_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "question_id",
    "option",
    "brand",
    "target_group",
    "reference",
    "reference_waves",
    "mean",
    "sd",
    "lower",
    "upper",
    "p_up",
    "p_down",
    "p_error",
    "flag",
    "rule",
    "comparable",
    "status",
    "note",
)


class ChangeFlag(StrEnum):
    """What a change says at the configured probability."""

    UP = "up"
    DOWN = "down"
    STEADY = "steady"


@dataclass(frozen=True)
class ChangeSummary:
    """A change (current minus reference): its mean, interval, P(up), P(down) and flag."""

    mean: float
    lower: float
    upper: float
    p_up: float
    p_down: float
    flag: ChangeFlag
    #: P(change > min_change) and P(change < -min_change): what the flag rule reads (equal to
    #: ``p_up``/``p_down`` at min_change 0).
    p_up_beyond: float = float("nan")
    p_down_beyond: float = float("nan")
    #: Posterior sd of the change: with ``mean``, what the false discovery rule learns from.
    sd: float = float("nan")


class ReferenceWaveError(ConfigError):
    """A reference wave that cannot be compared with: missing, incomplete or of another kind."""


def flag_threshold(probability: float) -> float:
    """P(up) or P(down) at which a change is flagged, for a two-sided flag ``probability``.

    >>> flag_threshold(0.95), flag_threshold(0.90)
    (0.975, 0.95)
    """
    return round((1.0 + probability) / 2.0, 12)


def compare_draws(
    current: np.ndarray,
    reference: np.ndarray,
    *,
    probability: float = 0.95,
    interval: float = 0.90,
    min_change: float = 0.0,
) -> ChangeSummary:
    """Summarise the change from ``reference`` to ``current`` from paired posterior draws.

    Draw ``i`` of one wave is paired with draw ``i`` of the other. The two waves are fitted
    independently, to independent respondents, so their posteriors are independent and any
    pairing of their draws, this one included, is a sample from the joint posterior; the
    differences are then a sample of the posterior of the change. For the rolling view pass
    the draw-wise mean of several waves' draws as either side: the mean of draw ``i`` over
    independent waves is again a draw of the mean.

    Parameters
    ----------
    current, reference
        ``(draws,)`` posterior draws of the share in the two waves (same length).
    probability
        The two-sided level of the flag: a change is flagged up (down) when the central
        ``probability`` interval of the change lies above (below) zero, i.e. when P(up) (or
        P(down)) is at least ``(1 + probability) / 2``, 0.975 at the default 0.95. Flagging
        at P(up) >= 0.95 on either side would flag about 10% of unchanged estimates on a
        perfectly calibrated posterior (5% each way); an analyst reading "95%" expects 5%,
        which is what this rule gives (measured: ``bench/change_accuracy.py``).
    interval
        Level of the equal-tailed interval of the change.
    min_change
        The smallest change that matters: ``p_up_beyond``/``p_down_beyond`` are P(change >
        min_change) and P(change < -min_change), and the flag reads those.

    Returns
    -------
    ChangeSummary
        ``mean`` of the differences, ``lower``/``upper`` their ``(1 - interval)/2`` and
        ``(1 + interval)/2`` quantiles, ``p_up`` the share of draws above 0, ``p_down`` below 0
        (a draw of exactly 0 counts for neither), and ``flag``.

    Raises
    ------
    ValueError
        For arrays of different shapes, not 1-D, empty or with non-finite values, or a
        probability or interval out of range.

    Examples
    --------
    Three of four paired differences are up by a quarter, one is down by a quarter:

    >>> s = compare_draws(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.25, 0.25, 0.25, 0.75]))
    >>> s.mean, s.p_up, s.p_down, s.flag
    (0.125, 0.75, 0.25, <ChangeFlag.STEADY: 'steady'>)
    >>> compare_draws(np.array([0.5, 0.5]), np.array([0.25, 0.25])).flag.value
    'up'

    At 0.95 a change needs P(up) >= 0.975; at 0.90, P(up) >= 0.95 suffices:

    >>> ups = np.where(np.arange(40) < 38, 0.75, 0.25)  # P(up) = 38/40 = 0.95
    >>> compare_draws(ups, np.full(40, 0.5)).flag.value
    'steady'
    >>> compare_draws(ups, np.full(40, 0.5), probability=0.90).flag.value
    'up'
    """
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must lie in (0.5, 1), got {probability}")
    if not 0.0 < interval < 1.0:
        raise ValueError(f"interval must lie in (0, 1), got {interval}")
    now = np.asarray(current, dtype=float)
    then = np.asarray(reference, dtype=float)
    if now.ndim != 1 or now.shape != then.shape or now.size == 0:
        raise ValueError(
            f"current {now.shape} and reference {then.shape} must be paired (draws,) arrays "
            "of one length; thin both to the same number of draws first"
        )
    difference = now - then
    if not np.isfinite(difference).all():
        raise ValueError("draws contain NaN or infinity: a group with no population?")
    lower, upper = np.quantile(difference, [(1 - interval) / 2, (1 + interval) / 2])
    if min_change < 0:
        raise ValueError(f"min_change must be >= 0, got {min_change}")
    p_up = float(np.mean(difference > 0))
    p_down = float(np.mean(difference < 0))
    p_up_beyond = float(np.mean(difference > min_change)) if min_change else p_up
    p_down_beyond = float(np.mean(difference < -min_change)) if min_change else p_down
    one_side = flag_threshold(probability)
    if p_up_beyond >= one_side:
        flag = ChangeFlag.UP
    elif p_down_beyond >= one_side:
        flag = ChangeFlag.DOWN
    else:
        flag = ChangeFlag.STEADY
    return ChangeSummary(
        mean=float(difference.mean()),
        lower=float(lower),
        upper=float(upper),
        p_up=p_up,
        p_down=p_down,
        flag=flag,
        p_up_beyond=p_up_beyond,
        p_down_beyond=p_down_beyond,
        sd=float(difference.std(ddof=1)) if difference.size > 1 else 0.0,
    )


def tracking_of(manifest: Manifest) -> TrackingConfig:
    """The tracking settings the wave was published with (defaults for older manifests)."""
    return TrackingConfig.model_validate(manifest.config.get("tracking") or {})


# -- the references of a wave -----------------------------------------------------------------


#: Prior settings added after waves had been published, with the value those waves were
#: fitted with: their manifests lack the key, and reading it as today's default would call
#: two different models the same.
PRIORS_BEFORE_THEY_EXISTED: dict[str, Any] = {
    "group_sd": "half_normal",
    "interaction_zero_sum": "total",
}


def priors_of(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The model priors a wave was fitted with, from its manifest's config; None if unknown.

    >>> priors_of({"model": {"priors": {"group_sigma": 1.0}}})["group_sd"]
    'half_normal'
    >>> priors_of({"target_groups": {}}) is None
    True
    """
    priors = (config.get("model") or {}).get("priors")
    return None if priors is None else PRIORS_BEFORE_THEY_EXISTED | dict(priors)


@dataclass
class _Wave:
    """A complete wave as the comparison needs it: its models by key, groups and census."""

    wave: str
    models: dict[str, ManifestModel]
    target_groups: dict[str, Any]
    census: dict[str, str]  # market ("" for the whole input, older manifests) -> hash
    priors: dict[str, Any] | None = None  # None: not recorded (a hand-made manifest)

    @classmethod
    def read(cls, manifest: Manifest) -> _Wave:
        hashes = manifest.input_hashes
        census = {
            name.removeprefix(CENSUS_HASH_PREFIX): value
            for name, value in hashes.items()
            if name.startswith(CENSUS_HASH_PREFIX)
        }
        return cls(
            wave=manifest.wave,
            models={model.key: model for model in manifest.models},
            target_groups=dict(manifest.config.get("target_groups") or {}),
            census=census or {"": hashes.get("poststrat", "")},
            priors=priors_of(manifest.config),
        )

    def census_of(self, market: str) -> str | None:
        """The market's census hash, or the whole input's for older waves.

        Waves published before per-market hashes have only the whole input's, so there a
        census change in any market counts for every market.
        """
        return self.census.get(market, self.census.get(""))


@dataclass
class _Reference:
    """One comparison: its name, the waves averaged on each side."""

    name: str
    current: list[_Wave]
    reference: list[_Wave]

    @property
    def reference_waves(self) -> str:
        return ",".join(w.wave for w in self.reference)


def _earlier_complete(store: ResultStore, period: WavePeriod) -> list[str]:
    """Complete waves of the same kind before ``period``, latest first (manifests not read)."""
    earlier = []
    for name in wave_folders(store):
        other = detect_period(name)
        if other is not None and other.kind == period.kind and other.start < period.start:
            earlier.append(other)
    return [p.id for p in sorted(earlier, reverse=True) if store.is_complete(p.id)]


def later_waves_referencing(
    store: ResultStore, wave: str, tracking: TrackingConfig | None = None
) -> list[str]:
    """The complete later waves whose changes were computed against ``wave``, in order.

    A wave's references are its previous complete wave, the same period a year earlier and,
    for the rolling view, the ``2 * rolling_waves - 1`` complete waves before it. When
    ``wave`` is re-published (a re-run, a retracted model), every later wave that used it in
    one of those is stale; this lists them so their ``changes.parquet`` can be recomputed.

    Parameters
    ----------
    store
        The results root.
    wave
        The wave just published (a period id of ``tracking.period``).
    tracking
        Period kind and rolling window; defaults as in :class:`TrackingConfig`.
    """
    settings = tracking or TrackingConfig()
    period = parse_period(wave, settings.period)
    # one listing and one completeness check per wave, not one per (later wave, earlier wave)
    periods = [p for name in wave_folders(store) if (p := detect_period(name)) is not None]
    complete = sorted(p for p in periods if p.kind == period.kind and store.is_complete(p.id))
    depth = max(1, 2 * settings.rolling_waves - 1)
    stale = []
    for index, other in enumerate(complete):
        if other.start <= period.start:
            continue
        earlier = [p.id for p in reversed(complete[:index])]  # latest first
        if wave in earlier[:depth] or other.year_ago().id == wave:
            stale.append(other.id)
    return stale


def _chosen(store: ResultStore, wave: str, kind: str, choice: str) -> _Wave:
    """The explicitly chosen reference wave, or ``ReferenceWaveError`` saying how to fix it."""
    if choice == wave:
        raise ReferenceWaveError(f"reference wave '{choice}' is the wave itself; choose another")
    if choice not in wave_folders(store):
        raise ReferenceWaveError(
            f"reference wave '{choice}' does not exist in {store.root_uri}; list the waves "
            f"with `misterp waves --output {store.root_uri}` and choose a complete one"
        )
    parse_period(choice, kind)
    manifest = read_manifest(store, choice)
    if manifest is None:
        raise ReferenceWaveError(
            f"reference wave '{choice}' is incomplete (no manifest: it is running or stopped); "
            f"finish it with `misterp rerun --wave {choice} --output {store.root_uri}` or "
            "choose a complete wave"
        )
    return _Wave.read(manifest)


def _references(
    store: ResultStore,
    current: Manifest,
    tracking: TrackingConfig,
    reference_wave: str | None,
) -> list[_Reference]:
    period = parse_period(current.wave, tracking.period)
    earlier = _earlier_complete(store, period)
    loaded: dict[str, _Wave] = {current.wave: _Wave.read(current)}

    def wave(name: str) -> _Wave:
        if name not in loaded:
            manifest = read_manifest(store, name)
            if manifest is None:  # retracted since it was listed: a re-run started
                raise ReferenceWaveError(f"wave '{name}' became incomplete while being read")
            loaded[name] = _Wave.read(manifest)
        return loaded[name]

    this = loaded[current.wave]
    references = []
    if earlier:
        references.append(_Reference("previous", [this], [wave(earlier[0])]))
    year_ago = period.year_ago().id
    if year_ago in earlier:
        references.append(_Reference("year_ago", [this], [wave(year_ago)]))
    k = tracking.rolling_waves
    if k > 1 and len(earlier) >= 2 * k - 1:
        window = [this, *(wave(name) for name in earlier[: k - 1])]
        before = [wave(name) for name in earlier[k - 1 : 2 * k - 1]]
        references.append(_Reference("rolling", window, before))
    if reference_wave is not None:
        references.append(
            _Reference(
                "chosen", [this], [_chosen(store, current.wave, period.kind, reference_wave)]
            )
        )
    return references


# -- draws ------------------------------------------------------------------------------------


def _read_draws(store: ResultStore, wave: str, model: ManifestModel) -> dict[str, np.ndarray]:
    """Group name to ``(draws,)`` values of one model in one wave."""
    assert model.draws is not None
    return draws_by_group(store.read_parquet(f"{wave}/{model.draws}"))


def _thin(values: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws spread evenly over ``values`` (waves stored with different draw counts)."""
    if len(values) == n:
        return values
    return values[np.linspace(0, len(values) - 1, n).round().astype(int)]


def _window_mean(parts: Sequence[np.ndarray], n: int) -> np.ndarray:
    return np.mean([_thin(part, n) for part in parts], axis=0)


def _differences(
    key: str,
    group: str,
    definition: Any,
    reference: _Reference,
    draws: Mapping[str, dict[str, np.ndarray] | None],
) -> tuple[list[str], list[str], list[np.ndarray], list[np.ndarray]]:
    """Why the comparison is not like for like, what to note, and the draws of both sides."""
    problems: list[str] = []
    notes: list[str] = []
    sides: list[list[np.ndarray]] = [[], []]
    this = reference.current[0]
    spec = this.models[key].spec
    for side, waves in enumerate((reference.current, reference.reference)):
        for other in waves:
            model = other.models.get(key)
            if model is None:
                problems.append(f"model not in wave {other.wave}")
                continue
            if other is not this:
                for field, what in (("formula", "formula"), ("base_question", "base")):
                    changed = model.spec.get(field) != spec.get(field)
                    if field == "base_question":
                        changed = changed or model.spec.get("base_option") != spec.get(
                            "base_option"
                        )
                    if changed:
                        problems.append(f"{what} changed since {other.wave}")
                if None not in (other.priors, this.priors) and other.priors != this.priors:
                    # another model, even with the same formula: a shift in a small group can
                    # be the prior's; `misterp run` of the earlier wave refits it with the
                    # current priors
                    problems.append(f"model priors changed since {other.wave}")
                market = str(spec.get("market", ""))
                if other.census_of(market) != this.census_of(market):
                    problems.append(f"census changed since {other.wave}")
                if group != "all" and other.target_groups.get(group) != definition:
                    problems.append(
                        f"target group '{group}' "
                        + (
                            f"not defined in {other.wave}"
                            if group not in other.target_groups
                            else f"definition changed since {other.wave}"
                        )
                    )
            if model.estimate_status is not FitStatus.CONVERGED:
                notes.append(f"{model.estimate_status.value.replace('_', ' ')} in {other.wave}")
            values = (draws.get(other.wave) or {}).get(group)
            if values is None:
                problems.append(f"no draws in {other.wave}")
            elif not np.isfinite(values).all():
                problems.append(f"no estimate in {other.wave} (empty group)")
            else:
                sides[side].append(values)
    return problems, notes, sides[0], sides[1]


def _worst(statuses: Iterable[FitStatus]) -> FitStatus:
    return max(statuses, key=lambda status: status.severity, default=FitStatus.FAILED)


def wave_changes(
    store: ResultStore,
    wave: str,
    tracking: TrackingConfig | None = None,
    *,
    reference_wave: str | None = None,
) -> pd.DataFrame:
    """The changes of every model and target group of ``wave`` against its references.

    References: the previous complete wave (``previous``), the same period last year
    (``year_ago``) and, over ``rolling_waves`` = k, the mean of this wave and the k - 1 before
    it against the mean of the k before those (``rolling``), each when its waves exist and are
    complete; ``reference_wave`` adds one chosen wave (``chosen``). A row that is not like for
    like (model, target group or its definition, formula, base or census changed or missing)
    says why in ``note`` and has ``comparable`` False and no ``flag``; its numbers are kept
    where both sides have draws. A model that did not converge on either side is compared and
    noted. Draws are read one model at a time, so memory does not grow with the wave.

    Parameters
    ----------
    store
        The results root.
    wave
        A complete wave whose id is a period of ``tracking.period``.
    tracking
        Period kind, flag probability, interval and rolling window; default: the settings the
        wave was published with.
    reference_wave
        An extra reference chosen by the user.

    Returns
    -------
    pandas.DataFrame
        One row per model x target group x reference, columns ``CHANGE_COLUMNS``; empty
        when the wave has no earlier complete wave.

    Raises
    ------
    ReferenceWaveError
        ``wave`` is incomplete, or ``reference_wave`` does not exist or is incomplete.
    ConfigError
        A wave id that is not a period of the configured kind.
    """
    manifest = read_manifest(store, wave)
    if manifest is None:
        raise ReferenceWaveError(
            f"wave '{wave}' is not complete (no manifest in {store.uri(wave)}); publish it "
            f"first (misterp rerun --wave {wave} --output {store.root_uri})"
        )
    tracking = tracking or tracking_of(manifest)
    references = _references(store, manifest, tracking, reference_wave)
    rows: list[dict[str, Any]] = []
    this = _Wave.read(manifest)
    needed = {w.wave: w for r in references for w in (*r.current, *r.reference)}
    if not references:
        logger.info("wave %s: no earlier complete wave, no changes", wave)
        return _typed(pd.DataFrame(columns=list(CHANGE_COLUMNS)))

    def read(key: str) -> dict[str, dict[str, np.ndarray] | None]:
        found = {name: other.models.get(key) for name, other in needed.items()}
        return {
            name: _read_draws(store, name, model)
            if model is not None and model.draws is not None
            else None
            for name, model in found.items()
        }

    keys = sorted(this.models)
    # Reading is I/O (an S3 GET per file), so a few threads read ahead; a batch at a time
    # keeps at most _BATCH models' draws in memory, whatever the size of the wave.
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            for key, draws in zip(batch, pool.map(read, batch), strict=True):
                rows += _model_rows(wave, this, key, draws, references, tracking)
    frame = apply_flag_rule(pd.DataFrame(rows), tracking)
    frame = _typed(frame.reindex(columns=list(CHANGE_COLUMNS)))
    _log_incomparable(wave, frame)
    return frame


#: Working columns of the change rows: what the flag rule reads (P beyond min_change).
_UP_BEYOND = "_p_up_beyond"
_DOWN_BEYOND = "_p_down_beyond"


def apply_flag_rule(rows: pd.DataFrame, tracking: TrackingConfig) -> pd.DataFrame:
    """Flag the comparable changes under the rule in force, each reference a set of its own.

    Under ``fdr`` the set is every comparable row of one reference (previous, year ago,
    rolling, chosen) in the wave, all markets, models and target groups together: the wave's
    flags against its previous wave are what an analyst reads as one list, and the prior of
    the changes is learnt from them (:func:`misterp.tracking.flags.flag_comparisons`).
    ``p_error`` is each comparable row's posterior probability of being wrong if flagged
    (under the rule in force: the learnt prior's for ``fdr``, the draws' own for
    ``per_estimate``); ``rule`` names the rule.
    """
    out = rows.copy()
    out["flag"] = None
    out["p_error"] = np.nan
    out["rule"] = describe_rule(tracking.flags, tracking.change_probability)
    if out.empty or _UP_BEYOND not in out:
        return out
    for _, part in out.groupby("reference", sort=False):
        comparable = part[part[_UP_BEYOND].notna() & part["comparable"].astype(bool)]
        if comparable.empty:
            continue
        outcome = flag_comparisons(
            comparable["mean"].to_numpy(float),
            comparable["sd"].to_numpy(float),
            comparable[_UP_BEYOND].to_numpy(float),
            comparable[_DOWN_BEYOND].to_numpy(float),
            tracking.flags,
            tracking.change_probability,
        )
        out.loc[comparable.index, "p_error"] = outcome.error
        out.loc[comparable.index, "flag"] = [_FLAG_OF[int(d)].value for d in outcome.direction]
    return out


_FLAG_OF = {1: ChangeFlag.UP, -1: ChangeFlag.DOWN, 0: ChangeFlag.STEADY}


def _model_rows(
    wave: str,
    this: _Wave,
    key: str,
    draws: Mapping[str, dict[str, np.ndarray] | None],
    references: Sequence[_Reference],
    tracking: TrackingConfig,
) -> list[dict[str, Any]]:
    """The change rows of one model: every target group against every reference."""
    rows: list[dict[str, Any]] = []
    spec = this.models[key].spec
    groups = list(draws[wave] or {}) or ["all", *this.target_groups]
    for group in groups:
        definition = this.target_groups.get(group)
        for reference in references:
            problems, notes, now, then = _differences(key, group, definition, reference, draws)
            statuses = [
                w.models[key].estimate_status
                for w in (*reference.current, *reference.reference)
                if key in w.models
            ]
            row: dict[str, Any] = {
                "wave": wave,
                "market": spec.get("market"),
                "question_id": spec.get("question_id"),
                "option": spec.get("option"),
                "brand": spec.get("brand"),
                "target_group": group,
                "reference": reference.name,
                "reference_waves": reference.reference_waves,
                "comparable": not problems,
                "status": _worst(statuses).value,
                "note": "; ".join(dict.fromkeys([*problems, *notes])) or None,
                "flag": None,
            }
            complete_sides = len(now) == len(reference.current) and len(then) == len(
                reference.reference
            )
            if complete_sides:
                n = min(len(part) for part in (*now, *then))
                summary = compare_draws(
                    _window_mean(now, n),
                    _window_mean(then, n),
                    probability=tracking.change_probability,
                    interval=tracking.interval,
                    min_change=tracking.flags.min_change,
                )
                row |= {
                    _UP_BEYOND: summary.p_up_beyond,
                    _DOWN_BEYOND: summary.p_down_beyond,
                    "mean": summary.mean,
                    "sd": summary.sd,
                    "lower": summary.lower,
                    "upper": summary.upper,
                    "p_up": summary.p_up,
                    "p_down": summary.p_down,
                }
            rows.append(row)
    return rows


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The stored dtypes, also for an empty table (so every changes.parquet reads alike)."""
    numbers = {"mean", "sd", "lower", "upper", "p_up", "p_down", "p_error"}
    for column in numbers:
        frame[column] = frame[column].astype(float)
    frame["comparable"] = frame["comparable"].astype(bool)
    for column in set(CHANGE_COLUMNS) - numbers - {"comparable"}:
        frame[column] = frame[column].astype(object)
    return frame


def _log_incomparable(wave: str, frame: pd.DataFrame) -> None:
    """One warning per reason that makes rows not like for like, so nobody misses it."""
    notes = frame.loc[~frame["comparable"], "note"].dropna()
    for reason, count in notes.str.split("; ").explode().value_counts().items():
        if any(word in str(reason) for word in ("not converged", "failed")):
            continue
        logger.warning(
            "wave %s: %d change rows not like for like: %s (noted in %s)",
            wave,
            count,
            reason,
            CHANGES_FILE,
        )


def write_changes(store: ResultStore, wave: str, frame: pd.DataFrame) -> str:
    """Write ``OUTPUT/WAVE/changes.parquet`` atomically; returns its URI."""
    store.write_parquet(f"{wave}/{CHANGES_FILE}", frame)
    return store.uri(f"{wave}/{CHANGES_FILE}")
