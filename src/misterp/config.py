"""Settings every model family shares: the sampler, what "converged" means, the retry ladder.

A family's own configuration (``misterp.mrp.config`` for the tracker's wave, ``misterp.mmm.
config`` for media mix) embeds these sections and uses ``did_you_mean``/``allowed_keys`` for
its typo hints. Unknown keys are rejected with a "did you mean" hint because a typo in
``target_accept`` that silently falls back to the default is worse than an error at 2 a.m.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeGuard, Union, get_args, get_origin

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from misterp.errors import ConfigError

__all__ = [
    "S3_PROTOCOLS",
    "ConfigError",
    "ConfigYamlLoader",
    "ConvergencePolicy",
    "ConvergenceThresholds",
    "FrozenSettings",
    "RetryPolicy",
    "S3fsOptions",
    "SamplerConfig",
    "allowed_keys",
    "check_sampling_settings",
    "check_storage_options",
    "did_you_mean",
    "read_config_file",
    "s3fs_options",
    "validate_config",
]


class FrozenSettings(BaseModel):
    """A config section: frozen, and unknown keys are errors (typos never fall back)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


#: The sampler's default cap and first look, in draws per chain after warm-up.
DEFAULT_DRAWS, DEFAULT_CHECK_EVERY = 1000, 250


class SamplerConfig(FrozenSettings):
    """NUTS settings for one fit; retries derive stronger settings from these.

    A fit samples until it is precise, not a fixed length: after ``check_every`` draws per
    chain it is judged, and every ``check_every`` draws after that, on the same chains, until
    it passes the convergence policy or reaches ``draws`` (issue 23). A backend that cannot
    be looked at while it runs (PyMC, pymc-marketing) samples ``draws`` and is judged once.
    """

    backend: Literal["nutpie", "pymc"] = "nutpie"
    draws: int = Field(DEFAULT_DRAWS, gt=0, description="most draws per chain after tuning")
    check_every: int | None = Field(
        DEFAULT_CHECK_EVERY,
        gt=0,
        description="draws per chain between looks at the diagnostics (the first after this "
        "many); the fit stops at the first look that passes; None: sample `draws`, judge once",
    )
    # Judged at looks (check_every), 48 fits of a simulated wave, one core, paired: tune 500
    # -> 1.33 CPU s a fit, 521 draws per chain on average, none retried; 300 -> 0.95x, 1
    # retried; 200 -> 0.78x, 531 draws, none retried; 150 -> 0.80x, 1 retried. Warm-up was 37%
    # of a 500 + 1,000 fit. (Before looks, a fixed run: 500 -> 186 s for 100 models, 5
    # retried; 300 -> 190 s, 8 retried.) nutpie adapts in fewer steps than PyMC.
    tune: int = Field(200, gt=0)
    chains: int = Field(4, ge=2, description="R-hat needs at least two chains")
    # Measured on simulated waves: 0.9 leaves ~10 divergences per 4,000 draws, 0.95 a few,
    # 0.99 none; the retry ladder takes the rare remaining fit to 0.99.
    target_accept: float = Field(0.95, gt=0.5, lt=1.0)
    cores: int | None = Field(None, ge=1, description="chains run in parallel; None: all cores")
    random_seed: int = 20250601
    stored_draws: int = Field(
        1000,
        gt=0,
        description="posterior draws kept per model (thinned evenly, repeated evenly when a "
        "fit stopped with fewer); equal across models so that the draws of a base question "
        "and a conditional question can be paired",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_default_look_past_a_small_cap(cls, data: Any) -> Any:
        # the default first look (250) past a cap below it means: judge once, at the cap;
        # written out as check_every: null, so a stored record reads back the same
        if isinstance(data, dict) and "check_every" not in data:
            draws = data.get("draws", DEFAULT_DRAWS)
            if isinstance(draws, int) and draws < DEFAULT_CHECK_EVERY:
                return {**data, "check_every": None}
        return data

    @model_validator(mode="after")
    def _first_look_within_the_cap(self) -> SamplerConfig:
        if self.check_every is not None and self.check_every > self.draws:
            raise ValueError(
                f"check_every ({self.check_every}) is above the draws cap ({self.draws}): the "
                f"first look would come after the last draw; lower check_every or raise draws"
            )
        return self

    def looks(self) -> list[int]:
        """Draws per chain at which a fit is judged, the last at the cap.

        >>> SamplerConfig(draws=1000, check_every=300).looks()
        [300, 600, 900, 1000]
        >>> SamplerConfig(draws=1000, check_every=None).looks()
        [1000]
        >>> SamplerConfig(draws=200).looks()  # the default first look is past this cap
        [200]
        """
        if self.check_every is None:
            return [self.draws]
        return [*range(self.check_every, self.draws, self.check_every), self.draws]


class ConvergencePolicy(StrEnum):
    """Which quantities must be precise for a fit to count as converged.

    Both check R-hat on every parameter (and published estimand) and allow no divergences.
    """

    #: ESS >= ``ess_bulk_min``/``ess_tail_min`` on every published estimand (each target
    #: group's poststratified share), >= ``parameter_ess_bulk_min`` on every parameter
    #: (enough for R-hat to be reliable): precision where it is read (Vehtari et al. 2021).
    ESTIMANDS = "estimands"
    #: ESS >= ``ess_bulk_min``/``ess_tail_min`` on every parameter (misterp before issue 23);
    #: the media-mix family's default, whose published quantities are its parameters.
    ALL_PARAMETERS = "all_parameters"


class ConvergenceThresholds(FrozenSettings):
    """What "converged" means; a fit that misses any of these is reported as not converged."""

    policy: ConvergencePolicy = ConvergencePolicy.ESTIMANDS
    r_hat_max: float = Field(1.01, gt=1.0)
    ess_bulk_min: float = Field(400, ge=0)
    ess_tail_min: float = Field(400, ge=0)
    parameter_ess_bulk_min: float = Field(
        100, ge=0, description="bulk ESS every parameter needs under policy: estimands"
    )
    divergences_max: int = Field(0, ge=0)


def check_sampling_settings(sampler: SamplerConfig, thresholds: ConvergenceThresholds) -> None:
    """Refuse settings that cannot pass: an ESS above the draws the cap allows.

    The effective sample size of a well-mixed chain is about its number of draws, so a
    threshold above ``chains x draws`` could only pass by luck, after every fit burnt its cap.

    >>> check_sampling_settings(SamplerConfig(draws=50), ConvergenceThresholds())
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: convergence.ess_bulk_min (400) is above the 200 draws ... at least 100 or ...
    """
    total = sampler.chains * sampler.draws
    for name in ("ess_bulk_min", "ess_tail_min", "parameter_ess_bulk_min"):
        value = getattr(thresholds, name)
        if value > total:
            raise ValueError(
                f"convergence.{name} ({value:g}) is above the {total} draws the sampler's cap "
                f"allows (sampler.chains {sampler.chains} x sampler.draws {sampler.draws}); "
                f"raise sampler.draws to at least {math.ceil(value / sampler.chains)} or lower "
                f"the threshold"
            )


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


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _inside(annotation: object, part: int | str) -> object | None:
    """The type at ``part`` of a pydantic error location within a value of ``annotation``.

    Descends into model fields, list items (an index), dict values (a key) and union members
    (pydantic names the member a model came through, e.g. ``market.Recode.colum``).
    """
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        tagged = [arg for arg in members if _is_model(arg) and arg.__name__ == part]
        if tagged:
            return tagged[0]
        found = [inner for arg in members if (inner := _inside(arg, part)) is not None]
        return found[0] if found else None
    if _is_model(annotation):
        fields = annotation.model_fields
        return fields[part].annotation if isinstance(part, str) and part in fields else None
    if get_origin(annotation) in (list, tuple) and isinstance(part, int):
        return get_args(annotation)[0]
    if get_origin(annotation) is dict:
        return get_args(annotation)[1]
    return None


def allowed_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The field names valid at ``loc`` (for typo hints on nested sections).

    Sections inside lists and mappings count too (a mapping's ``questions[0]``, its
    ``demographics.age``), so a typo there gets its hint like any other.
    """
    current: object | None = model
    for part in loc[:-1]:
        current = _inside(current, part) if current is not None else None
    if get_origin(current) in (Union, UnionType):
        current = next((arg for arg in get_args(current) if _is_model(arg)), None)
    return sorted(current.model_fields) if _is_model(current) else []


def _named_parameters(function: Callable[..., object], *skip: str) -> set[str]:
    """The keyword names ``function`` takes by name (not its ``*args``/``**kwargs``)."""
    return {
        name
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and name not in {"self", *skip}
    }


@dataclass(frozen=True)
class S3fsOptions:
    """The options s3fs takes, and the keys of those whose value is a mapping.

    ``mapping_keys``: per mapping-valued option, the keys it takes, or None where they are
    not fixed (``s3_additional_kwargs`` are S3 request parameters, which botocore names per
    operation).
    """

    names: frozenset[str]
    mapping_keys: Mapping[str, frozenset[str] | None]


@functools.cache
def s3fs_options() -> S3fsOptions:
    """What ``storage_options`` may hold, read from the installed s3fs, aiobotocore and botocore.

    ``S3FileSystem`` takes any keyword (``**kwargs``): it gives ``use_listings_cache``,
    ``listings_expiry_time`` and ``max_paths`` to fsspec (which also takes
    ``skip_instance_cache``) and the rest to aiobotocore's ``AioSession``, which fails on the
    first request for any other. ``client_kwargs`` go to botocore's ``create_client`` and
    ``config_kwargs`` to ``AioConfig`` (botocore's ``Config`` options). Read from the
    signatures, so an upgrade that adds an option needs no change here.
    """
    import botocore.config
    import botocore.session
    import s3fs
    from aiobotocore.config import AioConfig
    from aiobotocore.session import AioSession

    return S3fsOptions(
        names=frozenset(
            _named_parameters(s3fs.S3FileSystem.__init__)
            | _named_parameters(AioSession.__init__)
            | {"use_listings_cache", "listings_expiry_time", "max_paths", "skip_instance_cache"}
        ),
        mapping_keys={
            "client_kwargs": frozenset(
                _named_parameters(botocore.session.Session.create_client, "service_name")
            ),
            "config_kwargs": frozenset(
                set(botocore.config.Config.OPTION_DEFAULTS) | _named_parameters(AioConfig.__init__)
            ),
            "s3_additional_kwargs": None,
        },
    )


def _option_problems(options: Mapping[str, object]) -> list[str]:
    """One line per option s3fs would refuse at its first request; names only, never values."""
    accepted = s3fs_options()
    problems: list[str] = []
    for name, value in options.items():
        if name not in accepted.names:
            hint = did_you_mean(str(name), sorted(accepted.names))
            problems.append(f"unknown option '{name}'{hint}")
        elif name in accepted.mapping_keys and value is not None:
            if not isinstance(value, Mapping):
                problems.append(
                    f"'{name}' must be a mapping ({{key: value, ...}}), "
                    f"got a {type(value).__name__}"
                )
                continue
            keys = accepted.mapping_keys[name]
            for key in value:
                if keys is not None and key not in keys:
                    problems.append(
                        f"unknown option '{name}.{key}'{did_you_mean(str(key), sorted(keys))}; "
                        f"'{name}' takes {', '.join(sorted(keys))}"
                    )
    return problems


#: URI schemes s3fs serves; storage options of a config whose input or output has one of
#: these are s3fs's. A local path's file system ignores options it does not know.
S3_PROTOCOLS = frozenset({"s3", "s3a"})


def check_storage_options(
    options: Mapping[str, object], uris: Iterable[str] = ("s3://",)
) -> dict[str, object]:
    """``options`` if s3fs takes them, else ``ConfigError`` naming each problem and the fix.

    s3fs accepts any keyword and any value when the store is made and fails at the first
    request (``TypeError: AioSession.__init__() got an unexpected keyword argument``,
    ``AttributeError: 'str' object has no attribute 'copy'``), which read as crashes of
    misterp; checked with the config, a typo is an input error naming the option. Only names
    are repeated, never a value: it may be a credential. Checked when one of ``uris`` (the
    config's input and output) is on S3; a local file system takes its own options
    (``auto_mkdir``) and ignores the rest.

    >>> check_storage_options({"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}})
    {'client_kwargs': {'endpoint_url': 'http://127.0.0.1:9000'}}
    >>> check_storage_options({"endpoint_uri": "http://s3"}, ["s3://bucket/results"])
    Traceback (most recent call last):
    ...
    misterp.errors.ConfigError: storage_options are passed to s3fs, which would refuse them: ...
    """
    on_s3 = any(fsspec.core.split_protocol(uri)[0] in S3_PROTOCOLS for uri in uris)
    problems = _option_problems(options) if options and on_s3 else []
    if problems:
        raise ConfigError(
            "storage_options are passed to s3fs, which would refuse them: "
            + "; ".join(problems)
            + f". s3fs accepts {', '.join(sorted(s3fs_options().names))}"
        )
    return dict(options)


class ConfigYamlLoader(yaml.SafeLoader):
    """YAML without the 1.1 booleans: ``yes``, ``no``, ``on`` and ``off`` stay text.

    Configs are full of levels and codes: an audience ``{category_user: [yes]}``, a mapping's
    ``{1: yes, 2: no}``. PyYAML's default (YAML 1.1) reads them as True and False, and the
    config then fails on a level the user wrote correctly. Only ``true`` and ``false`` are
    booleans here, as in YAML 1.2; a boolean setting written ``yes`` still validates, since
    pydantic reads the text ``yes``/``no``/``on``/``off`` as a boolean.
    """


ConfigYamlLoader.yaml_implicit_resolvers = {
    key: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_config_file(uri: str | Path) -> Mapping[str, object]:
    """The top-level mapping of a YAML config file (a path or fsspec URL), for any family.

    A missing, unreadable or malformed file is a ``ConfigError`` that says which and how, the
    same from the command line and from a flow run. Read with :class:`ConfigYamlLoader`, so a
    level ``yes`` stays ``yes``.
    """
    try:
        with fsspec.open(str(uri), "r") as handle:
            raw = yaml.load(handle, Loader=ConfigYamlLoader) or {}  # noqa: S506 (a SafeLoader)
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
