"""Flows whose ``config`` parameter is a file's path or URI, checked before a run is stored.

Prefect writes a flow run's parameters to its database when it creates the run, and checks
them against the flow's signature only afterwards, when the run starts. A config passed as a
mapping, credentials in its ``storage_options`` included, was therefore stored (in
``prefect.db-wal`` even after the run's copy was overwritten) before any check of ours could
refuse it (issue 26). So the config is never a mapping or an object, only a path:

- typed ``str`` in the flow's signature, so a deployment's parameter schema says ``string``
  and the server refuses a mapping from the UI, the API or ``run_deployment`` before it
  creates a run (deployments enforce their parameter schema);
- and :class:`ConfigPathFlow` refuses anything else in the one place Prefect calls before it
  creates a run from a call (``serialize_parameters``), so ``run_wave(config={...})`` raises
  without a run either.

Secrets then stay in the config file and the environment, where the flow reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow

from misterp.errors import ConfigError

__all__ = ["ConfigPathFlow", "config_path_flow", "refuse_config_object"]


def refuse_config_object(flow_name: str, config: object) -> None:
    """``ConfigError`` unless ``config`` is a path or URI (or absent); never shows its value."""
    if config is None or isinstance(config, str):
        return
    raise ConfigError(
        f"{flow_name}: config must be the path or URI of the YAML config file, not a "
        f"{type(config).__name__}: run parameters are stored in Prefect's database for anyone "
        "with the UI to read, so the config (whose storage options may hold credentials) is "
        "never one; nothing was stored. Write the config to a file and pass its path, with "
        "credentials in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a "
        "Kubernetes Secret)"
    )


class ConfigPathFlow[**P, R](Flow[P, R]):
    """A flow whose ``config`` must be a path or URI, refused before Prefect creates a run."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """Refuse a config that is not a path, then serialise as Prefect does.

        Prefect calls this to create the run from a call, before the run exists and before it
        validates the parameters (after the run exists).
        """
        refuse_config_object(self.name, parameters.get("config"))
        return super().serialize_parameters(parameters)


def config_path_flow[**P, R](name: str) -> Callable[[Callable[P, R]], ConfigPathFlow[P, R]]:
    """``@flow(name=...)`` for a flow whose ``config`` parameter is a path (see the module)."""

    def decorate(fn: Callable[P, R]) -> ConfigPathFlow[P, R]:
        return ConfigPathFlow(fn=fn, name=name)

    return decorate
