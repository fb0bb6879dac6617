"""The brand funnel (aware -> consider -> ...): population shares and conversions, draw-wise.

A stage asked only among the previous stage's "yes" (its base) is published as a share *among
that base*, so its population share is P(earlier) x P(later | earlier), taken draw by draw
from the paired draws: the funnel is coherent by construction and its conversion is the
published share itself. A stage asked to everyone is a population share already; then a later
stage can come out above an earlier one, which is reported (``coherent`` false, with the
probability), never silently.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    "FUNNEL_COLUMNS",
    "FUNNEL_FILE",
    "FUNNEL_VIEW",
    "Funnel",
    "FunnelStage",
    "build_funnel",
    "funnel_table",
    "funnel_view",
    "p_above",
    "plan_funnels",
    "stage_shares",
]

logger = logging.getLogger(__name__)

FUNNEL_FILE = "funnel.parquet"

#: Columns of ``funnel.parquet``, in order.
FUNNEL_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "brand",
    "funnel",
    "target_group",
    "stage",
    "stage_name",
    "question_id",
    "option",
    "conditional",
    "interval",
    "share_mean",
    "share_lower",
    "share_upper",
    "conversion_mean",
    "conversion_lower",
    "conversion_upper",
    "p_above_previous",
    "coherent",
    "status",
)


@dataclass(frozen=True)
class FunnelStage:
    """One stage: a model, and whether it was asked only among the previous stage's "yes"."""

    name: str
    key: str
    question_id: str
    option: str
    conditional: bool


@dataclass(frozen=True)
class Funnel:
    """A brand's stages in one market, in order."""

    market: str
    brand: str
    stages: tuple[FunnelStage, ...]

    @property
    def name(self) -> str:
        """The stage names joined, e.g. ``aware > consider``."""
        return " > ".join(stage.name for stage in self.stages)


def stage_shares(
    stage_draws: Sequence[np.ndarray], conditional: Sequence[bool]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Population share and conversion from the previous stage of each stage, per draw.

    Parameters
    ----------
    stage_draws
        ``(draws,)`` per stage, paired by draw: a conditional stage's draws are its share among
        the previous stage's "yes", the others' population shares.
    conditional
        Per stage, whether it was asked only among the previous stage's "yes".

    Returns
    -------
    tuple
        Shares and conversions per stage; the first stage's conversion is NaN, as is a
        conversion from a previous share of 0.

    Examples
    --------
    Consideration asked among the aware: 0.5 of the population is aware, 0.25 of them consider.

    >>> shares, conversions = stage_shares([np.array([0.5]), np.array([0.25])], [False, True])
    >>> shares[1].tolist(), conversions[1].tolist()
    ([0.125], [0.25])

    Asked to everyone, consideration is a population share, and the conversion a ratio:

    >>> shares, conversions = stage_shares([np.array([0.5]), np.array([0.25])], [False, False])
    >>> shares[1].tolist(), conversions[1].tolist()
    ([0.25], [0.5])
    """
    if len(stage_draws) != len(conditional):
        raise ValueError(
            f"{len(stage_draws)} stages of draws but {len(conditional)} conditional flags"
        )
    if conditional and conditional[0]:
        raise ValueError("the first stage has no previous stage to be conditional on")
    shares: list[np.ndarray] = []
    conversions: list[np.ndarray] = []
    for draws, is_conditional in zip(stage_draws, conditional, strict=True):
        values = np.asarray(draws, dtype=float)
        if not shares:
            shares.append(values)
            conversions.append(np.full_like(values, np.nan))
            continue
        previous = shares[-1]
        if values.shape != previous.shape:
            raise ValueError(f"stage draws {values.shape} do not pair with {previous.shape}")
        if is_conditional:
            shares.append(previous * values)
            conversions.append(values)
        else:
            shares.append(values)
            with np.errstate(invalid="ignore", divide="ignore"):
                conversions.append(np.where(previous > 0, values / previous, np.nan))
    return shares, conversions


def p_above(later: np.ndarray, earlier: np.ndarray) -> float:
    """Posterior probability that a later stage's share is above an earlier one's.

    Draws where either is NaN are left out; NaN when none is left.

    >>> p_above(np.array([0.3, 0.1, 0.4, 0.2]), np.array([0.2, 0.2, 0.2, 0.2]))
    0.5
    """
    later, earlier = np.asarray(later, dtype=float), np.asarray(earlier, dtype=float)
    finite = np.isfinite(later) & np.isfinite(earlier)
    if not finite.any():
        return float("nan")
    return float(np.mean(later[finite] > earlier[finite]))


def _options(specs: Sequence[ModelSpec]) -> dict[tuple[str, str], list[ModelSpec]]:
    by_question: dict[tuple[str, str], list[ModelSpec]] = defaultdict(list)
    for spec in specs:
        by_question[(spec.market, spec.question_id)].append(spec)
    return by_question


def _stage_name(spec: ModelSpec) -> str:
    return question_family(spec.question_id, spec.brand) or spec.question_id


def _derived_funnels(specs: Sequence[ModelSpec]) -> list[Funnel]:
    """Chains of yes/no questions in which each is asked among the previous one's answer."""
    by_question = _options(specs)
    by_key = {spec.key: spec for spec in specs}

    def single(spec: ModelSpec) -> bool:
        return len(by_question[(spec.market, spec.question_id)]) == 1

    children: dict[str, list[ModelSpec]] = defaultdict(list)
    for spec in specs:
        parent = by_key.get(spec.base_key) if spec.base_key else None
        # An association (another option than the base's, or several options) is a profile
        # of the base, not a further stage of the funnel.
        if (
            parent is not None
            and spec.brand is not None
            and spec.brand == parent.brand
            and spec.option == spec.base_option
            and single(spec)
            and single(parent)
        ):
            children[parent.key].append(spec)
    funnels: list[Funnel] = []

    def walk(path: list[ModelSpec]) -> None:
        below = sorted(children.get(path[-1].key, []), key=lambda s: s.key)
        if not below:
            if len(path) > 1:
                stages = tuple(
                    FunnelStage(_stage_name(s), s.key, s.question_id, s.option, i > 0)
                    for i, s in enumerate(path)
                )
                funnels.append(Funnel(path[0].market, str(path[0].brand), stages))
            return
        for child in below:
            walk([*path, child])

    for root in sorted(specs, key=lambda s: s.key):
        if root.base_question is None and root.key in children:
            walk([root])
    return funnels


def _configured_funnels(specs: Sequence[ModelSpec], stages: Sequence[str]) -> list[Funnel]:
    """The configured stages of every brand that has at least two of them, in order."""
    by_question = _options(specs)
    found: dict[tuple[str, str, str], ModelSpec] = {}
    for (market, _question), options in by_question.items():
        spec = options[0]
        family = question_family(spec.question_id, spec.brand)
        if family is None or family not in stages or spec.brand is None:
            continue
        chosen = (
            options[0]
            if len(options) == 1
            else next((s for s in options if s.option == "yes"), None)
        )
        if chosen is None:
            logger.warning(
                "funnel stage %s: question %s in %s has options %s and none is 'yes'; skipped",
                family,
                spec.question_id,
                market,
                ", ".join(sorted(s.option for s in options)),
            )
            continue
        found[(market, spec.brand, family)] = chosen
    funnels = []
    for market, brand in sorted({(m, b) for m, b, _family in found}):
        path: list[FunnelStage] = []
        for name in stages:
            stage = found.get((market, brand, name))
            if stage is None:
                continue  # a brand without this stage: the funnel goes on without it
            previous = path[-1] if path else None
            conditional = previous is not None and stage.base_key == previous.key
            if stage.base_key is not None and not conditional:
                # Its draws are a share among a base that is not the previous stage: they
                # cannot be chained into population shares.
                logger.warning(
                    "funnel %s/%s stops before %s: it is asked among %s, not among the "
                    "previous stage",
                    market,
                    brand,
                    stage.question_id,
                    stage.base_key,
                )
                break
            path.append(FunnelStage(name, stage.key, stage.question_id, stage.option, conditional))
        if len(path) > 1:
            funnels.append(Funnel(market, brand, tuple(path)))
    return funnels


def plan_funnels(specs: Sequence[ModelSpec], stages: Sequence[str] | None = None) -> list[Funnel]:
    """The funnels of a wave: per market and brand, the stages in order.

    Without ``stages`` (``ReportingConfig.funnel``) the funnels follow the questions' bases: a
    yes/no question asked only among the "yes" of another question of the same brand is the
    next stage (``consider_X`` with base ``aware_X=yes``). Stages asked to everyone can only be
    named: with ``stages`` (question-id prefixes, e.g. ``["aware", "consider"]``) each brand's
    questions ``PREFIX_BRAND`` form its funnel, conditional where a stage's base is the
    previous stage.

    Examples
    --------
    >>> specs = [
    ...     ModelSpec("DE", "aware_b1", "yes", "f", "b1"),
    ...     ModelSpec("DE", "consider_b1", "yes", "f", "b1", "aware_b1", "yes"),
    ...     ModelSpec("DE", "assoc_b1", "fun", "f", "b1", "aware_b1", "yes"),
    ... ]
    >>> [(f.name, [s.conditional for s in f.stages]) for f in plan_funnels(specs)]
    [('aware > consider', [False, True])]
    """
    if stages is None:
        return _derived_funnels(specs)
    return _configured_funnels(specs, list(stages))


def funnel_table(
    wave: str,
    funnels: Sequence[Funnel],
    draws: GroupDraws,
    interval: float = DEFAULT_INTERVAL,
    statuses: Mapping[str, FitStatus] | None = None,
) -> pd.DataFrame:
    """One row per funnel x target group x stage, with shares and conversions summarised.

    A funnel ends at its first stage without draws (a failed model): a conditional stage after
    it could not be turned into a population share. ``statuses`` (model key to the status on
    its estimates) gives each row the worst status of the stages its numbers use, so a funnel
    built on a model that did not converge is flagged as its estimates are.
    """
    known = statuses or {}
    rows: list[dict[str, Any]] = []
    for funnel in funnels:
        stages = []
        for stage in funnel.stages:
            if stage.key not in draws:
                break
            stages.append(stage)
        if len(stages) < 2:
            continue
        groups = [g for g in draws[stages[0].key] if all(g in draws[s.key] for s in stages)]
        for group in groups:
            shares, conversions = stage_shares(
                [draws[s.key][group] for s in stages], [s.conditional for s in stages]
            )
            for number, stage in enumerate(stages):
                status = FitStatus.worst(
                    *(known.get(s.key, FitStatus.CONVERGED) for s in stages[: number + 1])
                )
                share = summarise(shares[number], interval)
                conversion = summarise(conversions[number], interval)
                above = p_above(shares[number], shares[number - 1]) if number else float("nan")
                rows.append(
                    {
                        "wave": wave,
                        "market": funnel.market,
                        "brand": funnel.brand,
                        "funnel": funnel.name,
                        "target_group": group,
                        "stage": number + 1,
                        "stage_name": stage.name,
                        "question_id": stage.question_id,
                        "option": stage.option,
                        "conditional": stage.conditional,
                        "interval": float(interval),
                        "share_mean": share["mean"],
                        "share_lower": share["lower"],
                        "share_upper": share["upper"],
                        "conversion_mean": conversion["mean"],
                        "conversion_lower": conversion["lower"],
                        "conversion_upper": conversion["upper"],
                        "p_above_previous": above,
                        # A later stage above an earlier one is what an analyst reads as a
                        # broken tool: flag it when more likely than not.
                        "coherent": not above > 0.5,
                        "status": status.value,
                    }
                )
    frame = pd.DataFrame(rows, columns=list(FUNNEL_COLUMNS))
    return frame.astype({"stage": "int64", "conditional": bool, "coherent": bool})


def funnel_view(wave: WaveDraws) -> pd.DataFrame:
    """The funnel table of a wave being published, from its draws in memory (no re-read)."""
    funnels = plan_funnels(wave.specs, wave.reporting.funnel)
    return funnel_table(wave.wave, funnels, wave.draws, wave.reporting.interval, wave.statuses)


#: The funnel as a view of each published wave (``funnel.parquet``).
FUNNEL_VIEW = WaveView("funnel", FUNNEL_FILE, funnel_view)


def build_funnel(store: ResultStore, wave: str) -> pd.DataFrame:
    """Build a published wave's funnel table from its stored draws and write ``funnel.parquet``.

    For a wave published before the funnel existed; ``publish_wave`` builds it from the draws
    in memory. The stages and interval come from the config stored in the manifest.
    """
    published = read_published_draws(store, wave)
    reporting = published.manifest.config.get("reporting") or {}
    table = funnel_table(
        wave,
        plan_funnels(published.specs, reporting.get("funnel")),
        published.draws,
        reporting.get("interval", DEFAULT_INTERVAL),
        published.statuses,
    )
    store.write_parquet(f"{wave}/{FUNNEL_FILE}", table)
    return table
