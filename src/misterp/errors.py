"""Errors every layer raises, in a module that imports nothing of misterp.

``ConfigError`` lives here, not in ``config``, so that modules the config itself uses (the
wave periods of ``tracking.periods``) can raise it without importing the config back.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config file that cannot be used, with every problem and its fix."""
