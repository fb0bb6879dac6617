"""misterp: Bayesian brand tracking with multilevel regression and poststratification (MRP).

The package is the orchestration-free core: validation, model specs, cell aggregation,
fitting, diagnostics, poststratification and storage. Prefect wiring lives in ``flows/``.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("misterp")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
