"""A wave read, validated and planned once: the specs, cell layouts, counts and sample shares.

``PreparedWave`` is what every later step needs and nothing more: the raw respondent frames are
dropped once the cells are aggregated, so the parent of a 1,000-model wave does not hold them
for the whole run. It is built from the raw input by ``prepare_wave`` or read back from the
store by ``staging.load_staged_wave``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from misterp.config import ConfigError
from misterp.mrp.cells import (
    CellCounts,
    MarketCells,
    aggregate_cells,
    build_market_cells,
    census_cells,
    earlier_profile_counts,
)
from misterp.mrp.census import BuiltCensus
from misterp.mrp.config import ProfileMissing, WaveConfig
from misterp.mrp.data import WaveData
from misterp.mrp.fits import PlannedFit
from misterp.mrp.joint import FitUnit, stacked_cells, stacked_counts
from misterp.mrp.profiles import MISSING_PROFILE_LEVEL, with_missing_profiles
from misterp.mrp.published import question_family
from misterp.mrp.raking import rake_weights, sample_shares
from misterp.mrp.records import CENSUS_HASH_PREFIX
from misterp.mrp.specs import ModelSpec, plan_model_specs
from misterp.mrp.validation import read_earlier_respondents, read_wave
from misterp.periods import detect_period

__all__ = ["PreparedWave", "default_wave_id", "fit_settings_hash", "prepare_wave"]

logger = logging.getLogger(__name__)


def default_wave_id(now: dt.datetime | None = None) -> str:
    """The current month, ``YYYY-MM``: monthly trackers name waves this way."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m")


def fit_settings_hash(config: WaveConfig) -> str:
    """Hash of everything besides spec and data that changes a fit's posterior or verdict.

    ``cores`` is left out: it changes the wall time, not the draws.
    """
    payload = {
        "priors": config.model.priors.model_dump(mode="json"),
        "sampler": config.sampler.model_dump(mode="json", exclude={"cores"}),
        "convergence": config.convergence.model_dump(mode="json"),
        "retry": config.retry.model_dump(mode="json"),
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class PreparedWave:
    """Everything the fits and the publication need, computed once."""

    config: WaveConfig
    wave_id: str
    specs: list[ModelSpec]
    layouts: dict[str, MarketCells]
    counts: dict[str, CellCounts]
    shares: pd.DataFrame
    input_hashes: dict[str, str]
    #: Set when staged: which staging of the wave this is (fit workers cache by it).
    stage_id: str | None = None
    #: Respondents in the input; None when read back from the store (only cells are staged).
    n_respondents: int | None = None
    #: The joint built from the wave's census tables and how; None when it gave poststrat.
    census: BuiltCensus | None = None
    #: Known population shares of profile levels (``profile_margins``): market -> profile ->
    #: level -> share; the synthetic table is raked to them when publishing.
    profile_margins: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    #: The wave's campaign milestones (``milestones``: date, market or all, label), published
    #: for the report's trend charts; None without the file.
    milestones: pd.DataFrame | None = None
    #: market -> which earlier waves' respondents its profile models pooled
    #: (``profile_settings.pool_waves``), as the audience sizes' note says it; empty: none.
    profile_pooling: dict[str, str] = field(default_factory=dict)

    def spec(self, key: str) -> ModelSpec:
        """The planned spec with this key."""
        spec = self._by_key.get(key)
        if spec is None:
            raise KeyError(f"model '{key}' is not planned in wave {self.wave_id}")
        return spec

    @cached_property
    def _by_key(self) -> dict[str, ModelSpec]:
        return {spec.key: spec for spec in self.specs}

    @cached_property
    def _families(self) -> dict[tuple[str, str], tuple[ModelSpec, ...]]:
        families: dict[tuple[str, str], list[ModelSpec]] = {}
        for spec in self.specs:
            if spec.joint is not None:
                families.setdefault((spec.market, spec.joint), []).append(spec)
        return {
            name: tuple(sorted(members, key=lambda s: s.key)) for name, members in families.items()
        }

    @cached_property
    def _family_data_hashes(self) -> dict[tuple[str, str], str]:
        """Each family's data hash, from its stacked counts alone (no stacked cell frame)."""
        return {
            name: stacked_counts([self.counts[member.key] for member in members]).data_hash
            for name, members in self._families.items()
        }

    def members(self, spec: ModelSpec) -> tuple[ModelSpec, ...]:
        """The specs fitted together with ``spec`` (itself alone unless it is in a joint family)."""
        if spec.joint is None:
            return (spec,)
        return self._families[(spec.market, spec.joint)]

    def fit_unit(self, spec: ModelSpec) -> FitUnit:
        """What fitting ``spec`` fits: the spec on its market's cells, or its whole family."""
        members = self.members(spec)
        layout = self.layouts[spec.market]
        if spec.profile is not None:  # P(level | census cell): on the census cells alone
            return FitUnit(spec, members, census_cells(layout), self.counts[spec.key])
        if len(members) == 1:
            return FitUnit(spec, members, layout, self.counts[spec.key])
        return FitUnit(
            members[0],
            members,
            stacked_cells(layout, len(members)),
            stacked_counts([self.counts[member.key] for member in members]),
        )

    def fit_units(self, keys: Iterable[str]) -> list[str]:
        """The fits that bring ``keys`` up to date, in order, each once.

        A joint family is one fit under its lead's key, for any of its members: it writes
        every member's record.
        """
        leads: dict[str, None] = {}
        for key in keys:
            leads[self.members(self.spec(key))[0].key] = None
        return list(leads)

    @property
    def settings_hash(self) -> str:
        """The fit settings' hash that current fit records must carry."""
        return fit_settings_hash(self.config)

    def planned(self, spec: ModelSpec) -> PlannedFit:
        """What a current fit record of ``spec`` must match.

        A member of a joint family carries the family's data hash: its posterior depends on
        every item's answers.
        """
        if spec.joint is None:
            return PlannedFit(spec.key, spec.spec_hash, self.counts[spec.key].data_hash)
        family_hash = self._family_data_hashes[(spec.market, spec.joint)]
        return PlannedFit(spec.key, spec.spec_hash, family_hash)

    def planned_fits(self) -> list[PlannedFit]:
        """Every planned model, as the fit store compares them."""
        return [self.planned(spec) for spec in self.specs]


def _frame_hash(frame: pd.DataFrame) -> str:
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def prepare_wave(config: WaveConfig) -> PreparedWave:
    """Read and validate the input, plan the models and aggregate their cells.

    Raises ``InputValidationError`` (every input problem at once), ``ConfigError`` or
    ``FormulaError``; nothing is written in any case.
    """
    wave_id = config.wave or default_wave_id()
    data = read_wave(
        config.input,
        config.demographics,
        storage_options=config.storage_options,
        profiles=config.profiles,
        census=config.census,
    )
    data = with_missing_profiles(data, config.profile_settings.missing)
    check_target_groups(config, data)
    profiles = config.audience_profiles
    specs = plan_model_specs(
        data, config.model, profiles, profile_predictor=config.profile_settings.predictor
    )
    check_funnel_stages(config, specs)
    layouts = build_market_cells(data, config.target_groups, profiles)
    check_random_walk_levels(config, layouts)
    counts = aggregate_cells(data, layouts, specs)
    pooling = pool_earlier_waves(config, wave_id, profiles, layouts, specs, counts)
    shares = sample_shares(data, rake_weights(data), config.target_groups)
    hashes = {
        "respondents": _frame_hash(data.respondents),
        "answers": _frame_hash(data.answers),
        "poststrat": _frame_hash(data.poststrat),
        "questions": _frame_hash(data.questions),
        **(
            {"profile_margins": _frame_hash(data.profile_margins)}
            if data.profile_margins is not None
            else {}
        ),
        # per market too, so that a census update in one market leaves the others comparable
        **{
            f"{CENSUS_HASH_PREFIX}{market}": _frame_hash(cells.reset_index(drop=True))
            for market, cells in data.poststrat.groupby("market", sort=True)
        },
    }
    logger.info(
        "wave %s: %d respondents, %d markets, %d models planned",
        wave_id,
        len(data.respondents),
        len(layouts),
        len(specs),
    )
    return PreparedWave(
        config,
        wave_id,
        specs,
        layouts,
        counts,
        shares,
        hashes,
        n_respondents=len(data.respondents),
        census=data.census,
        profile_margins=margins_by_market(data.profile_margins),
        milestones=data.milestones,
        profile_pooling=pooling,
    )


def earlier_wave_ids(wave_id: str, count: int) -> list[str]:
    """The ``count`` waves before ``wave_id``, oldest first; ``ConfigError`` if it is no period.

    >>> earlier_wave_ids("2026-02", 2), earlier_wave_ids("2026-Q1", 1)
    (['2025-12', '2026-01'], ['2025-Q4'])
    """
    period = detect_period(wave_id)
    if period is None:
        raise ConfigError(
            f"profile_settings.pool_waves pools the waves before wave '{wave_id}', which needs "
            "wave ids that are periods (2026-11, 2026-Q4, 2026-W45, 2026-11-03); name the "
            "wave by its period, or set profile_settings.pool_waves: 1"
        )
    ids = []
    for _ in range(count):
        period = period.previous()
        ids.append(period.id)
    return ids[::-1]


def pool_earlier_waves(
    config: WaveConfig,
    wave_id: str,
    profiles: tuple[str, ...],
    layouts: dict[str, MarketCells],
    specs: list[ModelSpec],
    counts: dict[str, CellCounts],
) -> dict[str, str]:
    """Add the earlier waves' respondents to the profile models' counts (``pool_waves``).

    Profile shares move slowly, so the respondents of the ``pool_waves - 1`` waves before this
    one sharpen P(level | census cell); they enter the profile models only, never a question's
    model or a base. An earlier wave whose input folder has no respondents (a tracker's first
    waves) is left out and the note says so. ``counts`` is updated in place.

    Returns
    -------
    dict
        market -> note for its audience sizes (which waves, how many earlier respondents).
    """
    pool = config.profile_settings.pool_waves
    if pool == 1 or not profiles:
        return {}
    earlier_ids = earlier_wave_ids(wave_id, pool - 1)
    earlier: dict[str, pd.DataFrame] = {}
    for earlier_id in earlier_ids:
        uri = config.input_of(earlier_id)
        if uri is None:
            raise ConfigError(
                f"profile_settings.pool_waves: {pool} reads the earlier waves' respondents from "
                f"their input folders, but input '{config.input}' does not name the wave; write "
                "it with {wave} (e.g. data/{wave}), or set profile_settings.pool_waves: 1"
            )
        people = read_earlier_respondents(
            uri, config.demographics, profiles, config.storage_options
        )
        if people is None:
            continue
        if config.profile_settings.missing is ProfileMissing.OWN_LEVEL:
            people[list(profiles)] = people[list(profiles)].fillna(MISSING_PROFILE_LEVEL)
        earlier[earlier_id] = people
    notes = {}
    for market, layout in layouts.items():
        if not layout.profiles:
            continue
        used = [w for w, people in earlier.items() if people["market"].eq(market).any()]
        left_out = 0
        for spec in specs:
            if spec.profile is None or spec.market != market:
                continue
            dropped = 0  # per spec over every earlier wave; a profile's specs drop alike
            for people in earlier.values():
                extra, dropped_here = earlier_profile_counts(layout, spec, people)
                current = counts[spec.key]
                counts[spec.key] = CellCounts(yes=current.yes + extra.yes, n=current.n + extra.n)
                dropped += dropped_here
            left_out = max(left_out, dropped)
        pooled = int(sum(people["market"].eq(market).sum() for people in earlier.values()))
        note = (
            f"profile models pooled with waves {', '.join(used)} ({pooled:,} earlier respondents"
            + (f", {left_out:,} of them outside this wave's cells or levels" if left_out else "")
            + ")"
            if used
            else f"profile models from this wave alone (pool_waves: {pool})"
        )
        missing_waves = [w for w in earlier_ids if w not in used]
        if missing_waves:
            note += f"; no respondents of {', '.join(missing_waves)} in this market's inputs"
        notes[market] = note
        logger.info("wave %s, market %s: %s", wave_id, market, note)
    return notes


def margins_by_market(frame: pd.DataFrame | None) -> dict[str, dict[str, dict[str, float]]]:
    """``profile_margins`` rows as market -> profile -> level -> share.

    >>> rows = pd.DataFrame({"market": ["DE", "DE"], "profile": ["user", "user"],
    ...                      "level": ["no", "yes"], "share": [0.6, 0.4]})
    >>> margins_by_market(rows)
    {'DE': {'user': {'no': 0.6, 'yes': 0.4}}}
    """
    margins: dict[str, dict[str, dict[str, float]]] = {}
    if frame is None:
        return margins
    for market, profile, level, share in zip(
        frame["market"].astype(str),
        frame["profile"].astype(str),
        frame["level"].astype(str),
        frame["share"].astype(float),
        strict=True,
    ):
        margins.setdefault(market, {}).setdefault(profile, {})[level] = float(share)
    return margins


def check_funnel_stages(config: WaveConfig, specs: list[ModelSpec]) -> None:
    """Every configured funnel stage must name a question family of the wave.

    A stage is a question-id prefix (``consider`` for ``consider_brand01``); one that matches
    no brand's question would silently drop out of every funnel.

    >>> from misterp.mrp.config import parse_config
    >>> config = parse_config(
    ...     {"input": "i", "output": "o", "demographics": ["age"],
    ...      "reporting": {"funnel": ["aware", "concider"]}}
    ... )
    >>> specs = [ModelSpec("DE", "aware_b1", "yes", "f", "b1"),
    ...          ModelSpec("DE", "consider_b1", "yes", "f", "b1", "aware_b1", "yes")]
    >>> check_funnel_stages(config, specs)
    Traceback (most recent call last):
    ...
    misterp.errors.ConfigError: reporting.funnel: stage 'concider' names no question family of this wave (did you mean 'consider'?); families: aware, consider; give question-id prefixes, e.g. [aware, consider] for aware_BRAND, consider_BRAND
    """  # noqa: E501
    stages = config.reporting.funnel
    if not stages:
        return
    families = sorted(
        {f for s in specs if (f := question_family(s.question_id, s.brand)) is not None}
    )
    for stage in stages:
        if stage not in families:
            close = difflib.get_close_matches(stage, families, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"reporting.funnel: stage '{stage}' names no question family of this wave{hint}; "
                f"families: {', '.join(families) or 'none (no question names a brand)'}; give "
                "question-id prefixes, e.g. [aware, consider] for aware_BRAND, consider_BRAND"
            )


def check_random_walk_levels(config: WaveConfig, layouts: dict[str, MarketCells]) -> None:
    """The declared order of a random-walk demographic must list exactly its levels.

    A level left out would have no place on the walk, and an extra one (a typo) would mean the
    order was written for other data; the census and survey levels of every market count.

    >>> import pandas as pd
    >>> from misterp.mrp.config import parse_config
    >>> config = parse_config(
    ...     {"input": "i", "output": "o", "demographics": ["age"],
    ...      "model": {"priors": {"random_walk": {"age": ["18-34", "35-54", "55-64"]}}}}
    ... )
    >>> frame = pd.DataFrame({"age": ["18-34", "35-54", "55+"], "population": 1.0})
    >>> check_random_walk_levels(config, {"DE": MarketCells("DE", frame, ("age",))})
    Traceback (most recent call last):
    ...
    misterp.errors.ConfigError: model.priors.random_walk.age: market DE has levels ['18-34', '35-54', '55+'] but the order lists ['18-34', '35-54', '55-64']: missing 55+; not in the data 55-64; list every level of the census once, in order
    """  # noqa: E501
    problems = []
    for column, order in config.model.priors.random_walk.items():
        for market, layout in layouts.items():
            levels = sorted(layout.frame[column].astype(str).unique().tolist())
            missing = sorted(set(levels) - set(order))
            unknown = sorted(set(order) - set(levels))
            if missing or unknown:
                problems.append(
                    f"model.priors.random_walk.{column}: market {market} has levels {levels} but "
                    f"the order lists {list(order)}: missing {', '.join(missing) or 'none'}; "
                    f"not in the data {', '.join(unknown) or 'none'}; list every level of the "
                    "census once, in order"
                )
    if problems:
        raise ConfigError("\n".join(problems))


def check_target_groups(config: WaveConfig, data: WaveData) -> None:
    """A target group naming a level the census (or, for a profile, the survey) lacks is empty."""
    problems = []
    for name, definition in config.target_groups.items():
        for column, levels in definition.items():
            profile = column in data.profiles
            values = data.respondents[column].dropna() if profile else data.poststrat[column]
            known = set(values.astype(str))
            where = "the survey's answers" if profile else "the census"
            source = "respondents" if profile else "poststrat"
            for level in levels:
                if str(level) not in known:
                    problems.append(
                        f"  target_groups.{name}.{column}: level '{level}' is not in {where} "
                        f"({source} levels: {', '.join(sorted(known))})"
                    )
    if problems:
        raise ConfigError("invalid target groups\n" + "\n".join(problems))
