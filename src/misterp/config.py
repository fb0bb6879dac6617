"""Settings every model family shares: the sampler, what "converged" means, the retry ladder.

A family's own configuration (``misterp.mrp.config`` for the tracker's wave, ``misterp.mmm.
config`` for media mix) embeds these sections and uses ``did_you_mean``/``allowed_keys`` for
its typo hints. Unknown keys are rejected with a "did you mean" hint because a typo in
``target_accept`` that silently falls back to the default is worse than an error at 2 a.m.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from misterp.errors import ConfigError

__all__ = [
    "ConfigError",
    "ConvergenceThresholds",
    "FrozenSettings",
    "RetryPolicy",
    "SamplerConfig",
    "allowed_keys",
    "did_you_mean",
    "read_config_file",
    "validate_config",
]


class FrozenSettings(BaseModel):
    """A config section: frozen, and unknown keys are errors (typos never fall back)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplerConfig(FrozenSettings):
    """NUTS settings for one fit; retries derive stronger settings from these."""

    backend: Literal["nutpie", "pymc"] = "nutpie"
    draws: int = Field(1000, gt=0)
    # Measured on the 100-model throughput wave with the default model (bench/wave_throughput.py
    # --tune): 1000 -> 228 s, 4 fits retried; 500 -> 186 s, 5 retried; 300 -> 190 s, 8 retried
    # (the shorter warm-up's savings spent on retries). nutpie adapts in fewer steps than PyMC.
    tune: int = Field(500, gt=0)
    chains: int = Field(4, ge=2, description="R-hat needs at least two chains")
    # Measured on simulated waves: 0.9 leaves ~10 divergences per 4,000 draws, 0.95 a few,
    # 0.99 none; the retry ladder takes the rare remaining fit to 0.99.
    target_accept: float = Field(0.95, gt=0.5, lt=1.0)
    cores: int | None = Field(None, ge=1, description="chains run in parallel; None: all cores")
    random_seed: int = 20250601
    stored_draws: int = Field(
        1000,
        gt=0,
        description="posterior draws kept per model (thinned evenly); equal across models so "
        "that the draws of a base question and a conditional question can be paired",
    )


class ConvergenceThresholds(FrozenSettings):
    """What "converged" means; a fit that misses any of these is reported as not converged."""

    r_hat_max: float = Field(1.01, gt=1.0)
    ess_bulk_min: float = Field(400, ge=0)
    ess_tail_min: float = Field(400, ge=0)
    divergences_max: int = Field(0, ge=0)


class RetryPolicy(FrozenSettings):
    """How a fit that misses the thresholds is retried: a statistical ladder, not a re-run.

    Divergences step ``target_accept`` up the ladder and lengthen tuning; low ESS or high R-hat
    multiplies the draws. Identical settings are never run twice.
    """

    max_attempts: int = Field(3, ge=1)
    target_accept_ladder: list[float] = Field(default_factory=lambda: [0.99, 0.995])
    tune_factor: float = Field(2.0, ge=1.0)
    draws_factor: float = Field(2.0, ge=1.0)


def did_you_mean(word: str, choices: list[str]) -> str:
    """A hint naming the closest of ``choices`` to a mistyped ``word``, or ``""``.

    Shared by every family's config (:mod:`misterp.mmm.config` too).

    >>> did_you_mean("holdout_week", ["holdout_weeks", "interval"])
    " (did you mean 'holdout_weeks'?)"
    """
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names valid at ``loc`` (for typo hints on nested sections)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        current = (
            annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel)
            else None
        )
    return sorted(current.model_fields) if current is not None else []


def read_config_file(uri: str | Path) -> Mapping[str, object]:
    """The top-level mapping of a YAML config file (a path or fsspec URL), for any family.

    A missing, unreadable or malformed file is a ``ConfigError`` that says which and how, the
    same from the command line and from a flow run.
    """
    try:
        with fsspec.open(str(uri), "r") as handle:
            raw = yaml.safe_load(handle) or {}
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"config file not found: {uri}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a folder, not a YAML file: {uri}") from None
    except PermissionError:
        raise ConfigError(f"config file not readable (permission denied): {uri}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"config file {uri} is not valid YAML: {reason}") from None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{uri}: expected a mapping of keys at the top level")
    return raw


def validate_config[SettingsT: BaseModel](
    model: type[SettingsT], raw: Mapping[str, object], source: str, what: str = "config"
) -> SettingsT:
    """Validate a family's config mapping, turning pydantic errors into one ``ConfigError``.

    Each problem is one line naming its key; an unknown key gets the closest valid one and
    the keys valid there. ``what`` names the config in the message (``media-mix config``).
    """
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = allowed_keys(model, err["loc"])
                hint = did_you_mean(str(err["loc"][-1]), allowed)
                lines.append(f"  unknown key '{loc}'{hint}; valid keys here: {', '.join(allowed)}")
            else:
                lines.append(f"  {loc or '(top level)'}: {err['msg']}")
        raise ConfigError(f"{source}: invalid {what}\n" + "\n".join(lines)) from None
