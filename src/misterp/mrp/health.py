"""A wave's health report from its manifest (``OUTPUT/WAVE/health.md``)."""

from __future__ import annotations

from misterp.health import ModelHealth, RunHealth, attempts_problem, model_health
from misterp.mrp.records import Manifest, ManifestModel

__all__ = ["wave_health"]


def wave_health(manifest: Manifest) -> RunHealth:
    """The health of a wave from its manifest (the last attempt of every model)."""
    models = tuple(_model_health(model) for model in manifest.models)
    return RunHealth(
        run=manifest.wave,
        counts=manifest.counts,
        models=models,
        subject="wave",
        rerun=f"misterp rerun --wave {manifest.wave}",
        results_file="estimates.parquet",
    )


def _problem(model: ManifestModel) -> str | None:
    if not model.estimate_status.needs_attention:
        return None
    if not model.status.needs_attention:
        base = model.spec.get("base_question"), model.spec.get("base_option")
        market = model.spec.get("market")
        return f"its base model {market}/{base[0]}/{base[1]} is {model.estimate_status.value}"
    return attempts_problem(model.attempts)


def _model_health(model: ManifestModel) -> ModelHealth:
    return model_health(
        model.key, model.estimate_status, model.attempts, model.seconds, _problem(model)
    )
