"""Console logging of the ``misterp`` command: one level and one format for every process.

The command sets Prefect's logging through its environment settings before Prefect is imported,
so the flow process and the fit processes it starts (which inherit the environment) log alike.
This module imports nothing from Prefect: ``misterp validate`` runs without it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

__all__ = [
    "JsonLinesFormatter",
    "configure_logging",
    "console_handler",
    "hide_tracebacks_of",
    "json_line",
    "prefect_logging_env",
]

#: LogRecord attributes Prefect adds inside a run; kept in the JSON object when present.
_RUN_FIELDS: tuple[str, ...] = (
    "flow_run_id",
    "flow_run_name",
    "flow_name",
    "task_run_id",
    "task_run_name",
    "task_name",
)


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, on one line: what log collectors in a pod expect.

    Keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message`` (arguments applied),
    the Prefect run fields when the record has them, and ``exception`` (the formatted
    traceback) when it carries one. Accepts and ignores ``fmt``, ``datefmt`` and ``style``,
    so Prefect's logging config can name it as a formatter class.

    Examples
    --------
    >>> record = logging.LogRecord("misterp", logging.INFO, "x.py", 1, "%d models", (3,), None)
    >>> record.created = 0.0
    >>> print(JsonLinesFormatter().format(record))  # doctest: +NORMALIZE_WHITESPACE
    {"time": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "misterp",
     "message": "3 models"}
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        validate: bool = True,
        **_: Any,
    ) -> None:
        super().__init__()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        fields: dict[str, Any] = {
            name: str(value)
            for name in _RUN_FIELDS
            if (value := getattr(record, name, None)) is not None
        }
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json_line(
            record.levelname, record.name, record.getMessage(), created=record.created, **fields
        )


def json_line(
    level: str, logger: str, message: str, *, created: float | None = None, **fields: Any
) -> str:
    """One JSON object on one line: ``time``, ``level``, ``logger``, ``message``, ``fields``.

    The command's own lines (its outcome) take this shape under ``--log-json`` too, so that
    everything a pod prints parses.
    """
    moment = dt.datetime.fromtimestamp(time.time() if created is None else created, dt.UTC)
    entry: dict[str, Any] = {
        "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
        "level": level,
        "logger": logger,
        "message": message,
        **fields,
    }
    return json.dumps(entry, default=str, ensure_ascii=False)


def prefect_logging_env(level: str, json_lines: bool) -> dict[str, str]:
    """Prefect settings (environment variables) for this level and format.

    Prefect reads them when it is imported and its logging config lets every key be
    overridden this way (``PREFECT_LOGGING_[PATH]_[TO]_[KEY]``, see Prefect's ``logging.yml``).
    """
    env = {
        "PREFECT_LOGGING_LEVEL": level,
        # The core logs on ``misterp.*``; this sends those records to the run logs in the UI.
        "PREFECT_LOGGING_EXTRA_LOGGERS": os.environ.get("PREFECT_LOGGING_EXTRA_LOGGERS")
        or "misterp",
        # The core also logs outside flow runs (the lease, validation): those lines belong on
        # the console only, without a warning that they could not reach the API.
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": os.environ.get(
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW"
        )
        or "ignore",
    }
    if json_lines:
        formatter = f"{JsonLinesFormatter.__module__}.{JsonLinesFormatter.__qualname__}"
        env |= {
            "PREFECT_LOGGING_FORMATTERS_JSON_CLASS": formatter,
            "PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER": "json",
            "PREFECT_LOGGING_HANDLERS_DEBUG_FORMATTER": "json",
            # The console handler prints through rich: no colour codes or markup in the JSON.
            "PREFECT_LOGGING_COLORS": "false",
            "PREFECT_LOGGING_MARKUP": "false",
        }
    return env


class _ConsoleHandler(logging.StreamHandler):
    """The command's own stderr handler, told apart so that configuring twice replaces it."""


def console_handler(json_lines: bool) -> logging.Handler:
    """A stderr handler in the command's format (text like Prefect's console, or JSON lines)."""
    handler = _ConsoleHandler(sys.stderr)
    handler.setFormatter(
        JsonLinesFormatter()
        if json_lines
        else logging.Formatter(
            "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S"
        )
    )
    return handler


def _install_console(json_lines: bool) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _ConsoleHandler)]:
        root.removeHandler(handler)
    root.addHandler(console_handler(json_lines))
    if root.level == logging.NOTSET or root.level < logging.WARNING:
        # Libraries (pymc, numba, fsspec) speak at WARNING, as under Prefect's config.
        root.setLevel(logging.WARNING)


def configure_logging(level: str, json_lines: bool, *, console: bool) -> None:
    """Set the level and format of the command and of Prefect, before Prefect is imported.

    Parameters
    ----------
    level
        ``DEBUG`` to ``CRITICAL``: for the ``misterp.*`` and ``prefect.*`` loggers.
    json_lines
        One JSON object per line instead of text.
    console
        Install the command's own stderr handler on the root logger. Needed where Prefect does
        not configure the console (``misterp validate``) and always for JSON: Prefect keeps a
        root handler that is already there and configures the rest from the environment.
    """
    os.environ.update(prefect_logging_env(level, json_lines))
    logging.getLogger("misterp").setLevel(level)
    if console or json_lines:
        _install_console(json_lines)


class _HideTraceback(logging.Filter):
    """Drop the traceback from records about errors whose message says it all."""

    def __init__(self, hide: Callable[[BaseException], bool]) -> None:
        super().__init__()
        self.hide = hide

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and self.hide(exc):
            record.exc_info = None
            record.exc_text = None
        return True


def hide_tracebacks_of(
    hide: Callable[[BaseException], bool],
    loggers: Iterable[str] = ("prefect.flow_runs", "prefect.task_runs"),
) -> None:
    """Log the errors ``hide`` picks, raised in flow and task runs, without their traceback.

    Invalid input or a locked wave is an answer, not a crash, and a store that stays
    unreachable is named in the message: Prefect would print the traceback of each retry and
    of the flow above the command's one-line message.
    """
    for name in loggers:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _HideTraceback)]:
            logger.removeFilter(old)
        logger.addFilter(_HideTraceback(hide))
