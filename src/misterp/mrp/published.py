"""What a wave publishes, as its views read it: specs and poststratified draws per model.

At publication the draws are already in memory (``mrp.wave.publish_wave`` passes them in); for
a wave published earlier ``read_published_draws`` reads them back through its manifest, so both
paths build the same tables from the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from misterp.mrp.config import ReportingConfig, TrackingConfig
from misterp.mrp.poststratify import draws_by_group
from misterp.mrp.records import Manifest
from misterp.mrp.specs import ModelSpec
from misterp.status import FitStatus
from misterp.storage import MANIFEST, ResultStore

__all__ = [
    "AUDIENCES_FILE",
    "MILESTONES_FILE",
    "GroupDraws",
    "PublishedDraws",
    "WaveDraws",
    "WaveView",
    "question_family",
    "read_published_draws",
]

#: A published wave's audience sizes (each target group's population share), in its folder.
AUDIENCES_FILE = "audiences.parquet"
#: The wave's campaign milestones (date, market or all, label), when its input had them.
MILESTONES_FILE = "milestones.parquet"

#: Model key to target group to ``(draws,)`` poststratified values.
GroupDraws = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class WaveDraws:
    """A wave's poststratified draws as it is being published, for the views built from them."""

    wave: str
    specs: tuple[ModelSpec, ...]
    #: Model key to target group to ``(draws,)`` poststratified values.
    draws: GroupDraws
    #: Model key to the status on its estimates (the worse of its own and its base's).
    statuses: Mapping[str, FitStatus]
    reporting: ReportingConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    #: Model key to target group to ``(draws,)`` of the group minus the rest of its market
    #: (poststratified from the same cell draws); empty for a wave read back from the store.
    versus_rest: GroupDraws = field(default_factory=dict)


@dataclass(frozen=True)
class WaveView:
    """A table built from a wave's draws and published beside its estimates, before the manifest.

    Publication takes the views it is handed (the pipeline hands it the tracker's funnel and
    competitor views), so a complete wave always has them while the family knows none of them.
    """

    #: The key in ``Manifest.files``.
    name: str
    #: The file in ``OUTPUT/WAVE/``.
    file: str
    build: Callable[[WaveDraws], pd.DataFrame]


def question_family(question_id: str, brand: str | None) -> str | None:
    """The brand-free part of a question id: ``aware_brand03`` of brand03 is ``aware``.

    Questions that are not about a brand, or whose id does not carry the brand as a ``_``
    separated prefix or suffix, have no family (None) and are left out of brand comparisons.

    >>> question_family("aware_brand03", "brand03"), question_family("brand03_nps", "brand03")
    ('aware', 'nps')
    >>> question_family("aware_brand03", None), question_family("aware_x", "brand03")
    (None, None)
    """
    if not brand:
        return None
    if question_id.endswith(f"_{brand}") and len(question_id) > len(brand) + 1:
        return question_id[: -len(brand) - 1]
    if question_id.startswith(f"{brand}_") and len(question_id) > len(brand) + 1:
        return question_id[len(brand) + 1 :]
    return None


@dataclass(frozen=True)
class PublishedDraws:
    """A complete wave's manifest, its planned specs and the draws of the published models."""

    manifest: Manifest
    specs: tuple[ModelSpec, ...]
    draws: dict[str, dict[str, np.ndarray]]
    #: Model key to the status on its estimates (the worse of its own and its base's).
    statuses: dict[str, FitStatus]


def read_published_draws(store: ResultStore, wave: str) -> PublishedDraws:
    """Read a complete wave's specs and draws through its manifest (one file per model).

    Raises ``FileNotFoundError`` for a wave without a manifest: an incomplete wave has no
    consistent set of draws to compare.
    """
    path = f"{wave}/{MANIFEST}"
    if not store.exists(path):
        raise FileNotFoundError(
            f"{store.uri(wave)} has no {MANIFEST}: the wave is not complete; publish it first"
        )
    manifest = Manifest.from_json(store.read_bytes(path), path)
    specs = tuple(ModelSpec(**model.spec) for model in manifest.models)
    draws = {
        model.key: draws_by_group(store.read_parquet(f"{wave}/{model.draws}"))
        for model in manifest.models
        if model.draws is not None
    }
    statuses = {model.key: model.estimate_status for model in manifest.models}
    return PublishedDraws(manifest, specs, draws, statuses)
