"""One tracking wave as plain functions: fit and record, assemble, publish.

The Prefect flows in ``flows/`` call exactly these steps and add only parallelism, logging
context and retries on I/O; ``run_wave_inline`` runs them one after another without any
orchestrator, for notebooks and tests. Data flow: ``prepare.prepare_wave`` ->
``staging.stage_wave`` -> ``fit_and_record`` per model (any process or pod) ->
``publish_wave`` from the fit records.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

from misterp.config import SamplerConfig
from misterp.fitting import Diagnose, FitResult, fit_with_policy, resume_settings
from misterp.health import HEALTH_FILE, RunHealth
from misterp.lease import check_holder
from misterp.mrp.census import CENSUS_FILE
from misterp.mrp.estimands import share_diagnostics
from misterp.mrp.fits import StoredFit, read_fit_record, write_fit
from misterp.mrp.health import wave_health
from misterp.mrp.joint import FitUnit, split_draws
from misterp.mrp.model import BACKENDS, Backend, cell_sampler, extract_cell_draws
from misterp.mrp.poststratify import (
    SUMMARY_COLUMNS,
    draws_by_group,
    draws_frame,
    poststratify,
    rest_masks,
    summarise,
)
from misterp.mrp.prepare import PreparedWave
from misterp.mrp.profiles import audience_shares, profile_weights
from misterp.mrp.published import AUDIENCES_FILE, MILESTONES_FILE, WaveDraws, WaveView
from misterp.mrp.records import FitRecord, Manifest, ManifestModel
from misterp.mrp.reliability import base_flag
from misterp.mrp.specs import ModelSpec
from misterp.mrp.staging import StagedWaveMissing, open_staged_wave
from misterp.records import Attempt, FitSummary, RecordError, StatusCounts
from misterp.status import FitStatus
from misterp.storage import ResultStore, StoreUnavailable

__all__ = [
    "AUDIENCE_COLUMNS",
    "ESTIMATE_COLUMNS",
    "ProfileWeighting",
    "WaveOutcome",
    "assemble_audiences",
    "assemble_estimates",
    "draws_path",
    "fit_and_record",
    "fit_prepared",
    "fit_staged",
    "market_profile_weighting",
    "profile_weighting",
    "publish_wave",
    "record_lost_fit",
    "unit_diagnostics",
]

logger = logging.getLogger(__name__)

#: Columns of ``audiences.parquet`` (each target group's population share), in order.
AUDIENCE_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "target_group",
    "profiles",
    *SUMMARY_COLUMNS,
    "status",
    "note",
)
#: Columns of ``estimates.parquet``, in order.
ESTIMATE_COLUMNS: tuple[str, ...] = (
    "wave",
    "market",
    "question_id",
    "option",
    "brand",
    "label",
    "base",
    "target_group",
    *SUMMARY_COLUMNS,
    "n",
    "base_flag",
    "raw_mean",
    "raked_mean",
    "raked_ess",
    "status",
    "r_hat_max",
    "ess_bulk_min",
    "ess_tail_min",
    "divergences",
    "attempts",
    "note",
)


@dataclass
class WaveOutcome:
    """What a finished wave produced and where."""

    wave_id: str
    output_uri: str
    estimates: pd.DataFrame
    manifest: Manifest

    @property
    def health(self) -> RunHealth:
        """Convergence of every model, problems first."""
        return wave_health(self.manifest)

    @property
    def counts(self) -> StatusCounts:
        """Models per status, said one way."""
        return self.manifest.counts


def fit_prepared(
    prepared: PreparedWave,
    spec: ModelSpec,
    sampler: SamplerConfig | None = None,
    *,
    backends: Mapping[str, Backend] = BACKENDS,
) -> FitResult:
    """Fit one planned spec of a prepared wave (from ``sampler`` instead of the config's).

    For a member of a joint family this fits the family's model under its lead's key; its
    draws are the stacked cells of every item (``misterp.mrp.joint.split_draws`` splits them).
    """
    return _fit_unit(prepared, prepared.fit_unit(spec), sampler, backends)


def _fit_unit(
    prepared: PreparedWave,
    unit: FitUnit,
    sampler: SamplerConfig | None,
    backends: Mapping[str, Backend],
) -> FitResult:
    config = prepared.config
    return fit_with_policy(
        cell_sampler(unit.lead, unit.layout, unit.counts, config.model.priors, backends),
        extract_cell_draws,
        key=unit.lead.key,
        sampler=sampler or config.sampler,
        thresholds=config.convergence,
        policy=config.retry,
        diagnose=unit_diagnostics(prepared, unit),
    )


def unit_diagnostics(prepared: PreparedWave, unit: FitUnit) -> Diagnose:
    """How the wave judges a fit of ``unit``: its parameters and its published shares."""
    layout = prepared.layouts[unit.lead.market] if unit.joint else unit.layout
    return share_diagnostics(unit, layout, prepared.config.convergence.policy)


def fit_and_record(
    prepared: PreparedWave,
    spec: ModelSpec,
    store: ResultStore,
    *,
    cores: int | None = None,
    backends: Mapping[str, Backend] = BACKENDS,
    run_id: str | None = None,
) -> FitRecord:
    """Fit one model and write its record at once, so nothing finished is lost later.

    A model that did not converge last time continues its retry ladder where it stopped, and
    its record keeps every attempt across runs. ``cores``: CPUs this fit's chains may use.
    ``run_id``: the run holding the wave's lease; the lease is checked before the fit and
    again before the record is written (``LeaseLost`` if another run took the wave over).
    A member of a joint family fits the family and writes every member's record (each with
    its own draws and the family's attempts); the lead's record is returned.
    """
    unit = prepared.fit_unit(spec)
    spec = unit.lead
    planned = prepared.planned(spec)
    config = prepared.config
    if run_id is not None:  # a run that lost its wave does not spend the CPU
        check_holder(store, prepared.wave_id, run_id)
    try:
        previous = read_fit_record(store, prepared.wave_id, spec.key)
    except RecordError as exc:
        logger.warning("%s; fitting from the start", exc)
        previous = None
    start = resume_settings(
        previous,
        expected={
            "spec": planned.spec_hash,
            "data": planned.data_hash,
            "settings": prepared.settings_hash,
        },
        policy=config.retry,
        thresholds=config.convergence,
    )
    sampler = start or config.sampler
    if cores is not None:
        sampler = sampler.model_copy(update={"cores": cores})
    result = _fit_unit(prepared, unit, sampler, backends)
    if start is not None and previous is not None:
        result.attempts[:0] = previous.attempts
        logger.info(
            "fit %s continued its retry ladder after %d attempts", spec.key, len(previous.attempts)
        )
    if run_id is not None:  # fencing: the record of a run that lost the lease is refused
        check_holder(store, prepared.wave_id, run_id)
    return _write_members(prepared, store, unit, result, run_id)


def _write_members(
    prepared: PreparedWave,
    store: ResultStore,
    unit: FitUnit,
    result: FitResult,
    run_id: str | None,
) -> FitRecord:
    """Write one record per member of a fit unit (the lead's last) and return the lead's.

    The lead's record is written last because a re-run looks at the lead's record to know
    where the family's retry ladder stands.
    """
    parts = (
        split_draws(result.draws, len(unit.members))
        if result.draws is not None and unit.joint
        else [result.draws] * len(unit.members)
    )
    written: dict[str, FitRecord] = {}
    for member, draws in reversed(list(zip(unit.members, parts, strict=True))):
        written[member.key] = write_fit(
            store,
            prepared.wave_id,
            replace(result, key=member.key, draws=draws),
            spec=member.to_dict(),
            planned=prepared.planned(member),
            settings_hash=prepared.settings_hash,
            n_respondents=int(prepared.counts[member.key].n.sum()),
            run_id=run_id,
        )
    return written[unit.lead.key]


def fit_staged(
    output: str,
    wave: str,
    key: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    cores: int | None = None,
    run_id: str | None = None,
) -> FitSummary:
    """Fit one model of a staged wave: the unit a worker process or a pod runs.

    A worker only ever starts after its run staged the wave, so a staged wave that is not
    there is a store that lost it (an endpoint that came back empty), an outage to re-run
    after, never an input error.
    """
    try:
        prepared = open_staged_wave(output, wave, storage_options)
    except StagedWaveMissing as exc:
        raise StoreUnavailable(
            output, f"reading the staged wave {wave} (the store lost the wave this run staged)", exc
        ) from exc
    store = ResultStore(output, storage_options)
    record = fit_and_record(prepared, prepared.spec(key), store, cores=cores, run_id=run_id)
    return FitSummary.from_record(record)


def record_lost_fit(
    output: str,
    wave: str,
    key: str,
    reason: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    run_id: str | None = None,
) -> FitSummary:
    """Record a fit whose worker process died as failed, with ``reason`` as its error.

    A killed process writes nothing, so without this record the model would be published as
    failed with no cause ("no fit result"); with it, the health report says what happened and
    a re-run refits it like any failed fit.
    """
    prepared = open_staged_wave(output, wave, storage_options)
    store = ResultStore(output, storage_options)
    unit = prepared.fit_unit(prepared.spec(key))
    if run_id is not None:  # fencing, as for a fit: a run that lost the wave writes nothing
        check_holder(store, prepared.wave_id, run_id)
    lost = Attempt(
        sampler=prepared.config.sampler, report=None, status=FitStatus.FAILED, error=reason
    )
    failed = FitResult(
        key=unit.lead.key, status=FitStatus.FAILED, attempts=[lost], draws=None, seconds=0.0
    )
    record = _write_members(prepared, store, unit, failed, run_id)
    return FitSummary.from_record(record)


def _notes(fit: StoredFit | None, prepared: PreparedWave) -> list[str]:
    if fit is None:
        return ["no fit result"]
    if fit.status is FitStatus.FAILED:
        return [(fit.error or "fit failed").splitlines()[0]]
    if fit.status is FitStatus.NOT_CONVERGED and fit.report is not None:
        return ["; ".join(fit.report.failures(prepared.config.convergence)) or "not converged"]
    return []


@dataclass(frozen=True)
class ProfileWeighting:
    """A market's P(profile levels | census cell) draws and how far to trust them."""

    weights: np.ndarray | None
    status: FitStatus
    notes: tuple[str, ...] = ()


def market_profile_weighting(
    prepared: PreparedWave, market: str, fits: Mapping[str, StoredFit]
) -> ProfileWeighting:
    """The profile weights of ``market`` from its profile models' fits (None: no profiles).

    Every estimate of the market is weighted by them, so a profile model without a posterior
    fails them all and a not converged one flags them all.
    """
    layout = prepared.layouts[market]
    specs = [s for s in prepared.specs if s.profile is not None and s.market == market]
    if not layout.profiles:
        return ProfileWeighting(None, FitStatus.CONVERGED)
    status, notes, draws = FitStatus.CONVERGED, [], {}
    for spec in specs:
        fit = fits.get(spec.key)
        if fit is None or fit.draws is None or fit.status is FitStatus.FAILED:
            return ProfileWeighting(
                None, FitStatus.FAILED, (f"profile model {spec.key} has no posterior",)
            )
        draws[spec.key] = fit.draws
        if fit.status.severity > status.severity:
            status = fit.status
            notes.append(f"profile model {spec.key} is {fit.status}")
    margins = {
        name: shares
        for name, shares in prepared.profile_margins.get(market, {}).items()
        if name in layout.profiles
    }
    notes += [f"{name} raked to its known shares (profile_margins)" for name in margins]
    if market in prepared.profile_pooling:
        notes.append(prepared.profile_pooling[market])
    weights = profile_weights(layout, specs, draws, margins)
    return ProfileWeighting(weights, status, tuple(notes))


def profile_weighting(
    prepared: PreparedWave, fits: Mapping[str, StoredFit]
) -> dict[str, ProfileWeighting]:
    """Every market's profile weighting, computed once for the estimates and the audiences."""
    return {market: market_profile_weighting(prepared, market, fits) for market in prepared.layouts}


def assemble_estimates(
    prepared: PreparedWave,
    fits: Mapping[str, StoredFit],
    weighting: Mapping[str, ProfileWeighting] | None = None,
    versus_rest: dict[str, dict[str, np.ndarray]] | None = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Poststratify every fit into the estimates table and per-model draws.

    ``versus_rest``, when given, is filled with each model's draws of every target group
    minus the rest of its market's population (everyone outside the group), both
    poststratified from the same cell draws with the same weights (base, profiles), so the
    difference carries their shared uncertainty draw by draw.

    A conditional question is weighted by its base model's draws; its status is the worse of
    its own and its base's, because a bad base makes the weights bad. In a market with
    profiles (audiences beyond the census) every cell is weighted, draw by draw, by
    P(its profile levels | its census cell) from the profile models, whose status counts the
    same way; the profile models themselves are published as audience sizes
    (:func:`assemble_audiences`), not as estimates. Every row carries its interval
    (``config.reporting``), its base ``n`` and ``base_flag``.
    """
    reporting = prepared.config.reporting
    shares: dict[tuple[str, str, str, str], dict[Any, Any]] = {
        (r["market"], r["question_id"], r["option"], r["target_group"]): r
        for r in prepared.shares.to_dict("records")
    }
    rows: list[dict[str, Any]] = []
    all_draws: dict[str, pd.DataFrame] = {}
    weighting = weighting if weighting is not None else profile_weighting(prepared, fits)
    for spec in prepared.specs:
        if spec.profile is not None:
            continue
        fit = fits.get(spec.key)
        layout = prepared.layouts[spec.market]
        status = fit.status if fit is not None else FitStatus.FAILED
        notes = _notes(fit, prepared)
        base_draws = None
        if spec.base_key is not None:
            base = fits.get(spec.base_key)
            if base is None or base.draws is None:
                status, base_draws = FitStatus.FAILED, None
                notes.append(f"base model {spec.base_key} has no posterior")
            else:
                base_draws = base.draws
                if base.status.severity > status.severity:
                    status = base.status
                    notes.append(f"base model {spec.base_key} is {base.status}")
        profiles = weighting[spec.market]
        if layout.profiles:
            notes += profiles.notes
            if profiles.status.severity > status.severity:
                status = profiles.status
            if profiles.weights is not None and base_draws is not None:
                base_draws = base_draws * profiles.weights
            elif profiles.weights is not None:
                base_draws = profiles.weights
        estimates: dict[str, np.ndarray] = {}
        if fit is not None and fit.draws is not None and status is not FitStatus.FAILED:
            estimates = poststratify(fit.draws, layout.population, layout.masks, base_draws)
            all_draws[spec.key] = draws_frame(estimates)
            if versus_rest is not None:
                rest = poststratify(
                    fit.draws, layout.population, rest_masks(layout.masks), base_draws
                )
                versus_rest[spec.key] = {
                    group: estimates[group] - values
                    for group, values in rest.items()
                    if np.isfinite(values).all() and np.isfinite(estimates[group]).all()
                }
        report = fit.report if fit is not None else None
        for group in layout.masks:
            summary = summarise(estimates.get(group, np.empty(0)), reporting.interval)
            share = shares.get((spec.market, spec.question_id, spec.option, group))
            n = int(share["n"]) if share is not None else 0
            rows.append(
                {
                    "wave": prepared.wave_id,
                    "market": spec.market,
                    "question_id": spec.question_id,
                    "option": spec.option,
                    "brand": spec.brand,
                    "label": spec.label,
                    "base": f"{spec.base_question}={spec.base_option}"
                    if spec.base_question
                    else None,
                    "target_group": group,
                    **summary,
                    "n": n,
                    "base_flag": base_flag(n, reporting.low_base, reporting.very_low_base).value,
                    "raw_mean": float(share["raw_mean"]) if share is not None else np.nan,
                    "raked_mean": float(share["raked_mean"]) if share is not None else np.nan,
                    # shares staged before raked_ess existed have none
                    "raked_ess": float(share.get("raked_ess", np.nan))
                    if share is not None
                    else np.nan,
                    "status": status.value,
                    "r_hat_max": report.r_hat_max if report else np.nan,
                    "ess_bulk_min": report.ess_bulk_min if report else np.nan,
                    "ess_tail_min": report.ess_tail_min if report else np.nan,
                    "divergences": report.divergences if report else -1,
                    "attempts": len(fit.record.attempts) if fit is not None else 0,
                    "note": "; ".join(notes) or None,
                }
            )
    frame = pd.DataFrame(rows, columns=list(ESTIMATE_COLUMNS))
    return frame, all_draws


def assemble_audiences(
    prepared: PreparedWave,
    fits: Mapping[str, StoredFit],
    weighting: Mapping[str, ProfileWeighting] | None = None,
) -> pd.DataFrame:
    """Each target group's share of its market's population, with its interval.

    A group on census demographics has its census share (no uncertainty); a group on a
    profile (category users) is an audience whose size, the category penetration, comes from
    the profile models draw by draw.
    """
    interval = prepared.config.reporting.interval
    stored = prepared.config.sampler.stored_draws
    rows = []
    for market, layout in prepared.layouts.items():
        market_weighting = (
            weighting[market]
            if weighting is not None
            else market_profile_weighting(prepared, market, fits)
        )
        n_draws = (
            market_weighting.weights.shape[0] if market_weighting.weights is not None else stored
        )
        shares = (
            audience_shares(layout, market_weighting.weights, n_draws)
            if market_weighting.status is not FitStatus.FAILED
            else {}
        )
        for group in layout.masks:
            used = [
                name
                for name in prepared.config.target_groups.get(group, {})
                if name in layout.profiles
            ]
            rows.append(
                {
                    "wave": prepared.wave_id,
                    "market": market,
                    "target_group": group,
                    "profiles": ", ".join(used) or None,
                    **summarise(shares.get(group, np.empty(0)), interval),
                    "status": (market_weighting.status if used else FitStatus.CONVERGED).value,
                    "note": "; ".join(market_weighting.notes)
                    if used and market_weighting.notes
                    else None,
                }
            )
    return pd.DataFrame(rows, columns=list(AUDIENCE_COLUMNS))


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("misterp", "bambi", "pymc", "pytensor", "nutpie", "pandera", "balance"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def draws_path(spec: ModelSpec) -> str:
    """Where a model's poststratified draws live, relative to the wave folder."""
    return f"draws/{spec.market}/{spec.question_id}/{spec.option}.parquet"


def publish_wave(
    prepared: PreparedWave,
    fits: Mapping[str, StoredFit],
    *,
    views: Sequence[WaveView] = (),
    started_at: float | None = None,
    run_id: str | None = None,
) -> WaveOutcome:
    """Write estimates, draws, the ``views`` and finally the manifest to ``OUTPUT/WAVE/``.

    The manifest is retracted before anything is written and published last, so an
    interrupted run never looks complete. Draws of models that left the plan are removed.
    With ``run_id`` (the run holding the wave's lease) the lease is checked before the first
    and before the last write, so a run that was taken over publishes nothing.
    """
    config = prepared.config
    store = ResultStore(config.output, config.storage_options)
    wave = prepared.wave_id
    if run_id is not None:
        check_holder(store, wave, run_id)
    store.retract(wave)
    # the profile weights (and their raking to known margins) once, for both tables
    weighting = profile_weighting(prepared, fits)
    versus_rest: dict[str, dict[str, np.ndarray]] = {}
    estimates, draws = assemble_estimates(prepared, fits, weighting, versus_rest)
    written = set()
    for spec in prepared.specs:
        if spec.key in draws:
            store.write_parquet(f"{wave}/{draws_path(spec)}", draws[spec.key])
            written.add(f"{wave}/{draws_path(spec)}")
    for leftover in set(store.list(f"{wave}/draws")) - written:
        store.remove(leftover)
    estimates_bytes = store.write_parquet(f"{wave}/estimates.parquet", estimates)
    store.write_parquet(f"{wave}/{AUDIENCES_FILE}", assemble_audiences(prepared, fits, weighting))
    published = {
        f"{r.market}/{r.question_id}/{r.option}": FitStatus(str(r.status))
        for r in estimates.drop_duplicates(["market", "question_id", "option"]).itertuples()
    }
    for spec in prepared.specs:  # a profile model is published as the audience sizes
        if spec.profile is not None:
            published[spec.key] = fits[spec.key].status if spec.key in fits else FitStatus.FAILED
    questions = tuple(spec for spec in prepared.specs if spec.profile is None)
    # The views (funnel, competitors: the pipeline's) from the draws in memory (no re-read),
    # before the manifest, so a complete wave always has them.
    grouped = {key: draws_by_group(frame) for key, frame in draws.items()}
    wave_draws = WaveDraws(
        wave, questions, grouped, published, config.reporting, config.tracking, versus_rest
    )
    for view in views:
        store.write_parquet(f"{wave}/{view.file}", view.build(wave_draws))
    census = prepared.census
    if census is not None:  # the joint built from margins, as its estimates used it
        store.write_parquet(f"{wave}/{CENSUS_FILE}", census.joint)
    elif store.exists(f"{wave}/{CENSUS_FILE}"):  # built by an earlier run from other input
        store.remove(f"{wave}/{CENSUS_FILE}")
    milestones = prepared.milestones
    if milestones is not None:  # for the report's trend charts
        store.write_parquet(f"{wave}/{MILESTONES_FILE}", milestones)
    else:
        store.remove(f"{wave}/{MILESTONES_FILE}")
    own = {
        spec.key: fits[spec.key].status if spec.key in fits else FitStatus.FAILED
        for spec in prepared.specs
    }
    models = []
    for spec in prepared.specs:
        fit = fits.get(spec.key)
        models.append(
            ManifestModel(
                key=spec.key,
                spec=spec.to_dict(),
                spec_hash=spec.spec_hash,
                data_hash=prepared.planned(spec).data_hash,
                status=own[spec.key],
                estimate_status=published[spec.key],
                attempts=fit.record.attempts if fit else (),
                seconds=fit.record.seconds if fit else None,
                fit_id=fit.record.fit_id if fit else None,
                n_respondents=int(prepared.counts[spec.key].n.sum()),
                draws=draws_path(spec) if spec.key in draws else None,
            )
        )
    counts = StatusCounts.count(own, published)
    manifest = Manifest(
        wave=wave,
        input=config.input,
        input_hashes=prepared.input_hashes,
        versions=_versions(),
        config=config.model_dump(mode="json", exclude={"storage_options"}),
        counts=counts,
        wall_seconds=time.perf_counter() - started_at if started_at else None,
        files={
            "estimates": "estimates.parquet",
            "audiences": AUDIENCES_FILE,
            "draws": "draws/",
            **{view.name: view.file for view in views},
            **({"census": CENSUS_FILE} if census is not None else {}),
            **({"milestones": MILESTONES_FILE} if milestones is not None else {}),
            "health": HEALTH_FILE,
        },
        estimates_sha256=hashlib.sha256(estimates_bytes).hexdigest(),
        models=tuple(models),
        healthy=counts.healthy,
        run_id=run_id,
        census=census.report if census is not None else None,
    )
    health = wave_health(manifest).to_markdown()
    if census is not None:
        health += "\n" + census.report.to_markdown()
    store.write_bytes(f"{wave}/{HEALTH_FILE}", health.encode())
    if run_id is not None:
        check_holder(store, wave, run_id)
    store.publish(wave, manifest.to_json())
    return WaveOutcome(wave, store.uri(wave), estimates, manifest)
