"""How a ``misterp`` command ends: exit codes, the one failure line, and its own printed lines.

Shared by every command group (``flows.cli`` and its sub-apps such as ``flows.mmm_cli``), so a
sub-app imports this module, never ``flows.cli``, which imports the sub-apps to register them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import NoReturn

import typer

from flows.logs import hide_tracebacks_of, json_line

__all__ = [
    "EXIT_CODE_MEANINGS",
    "ExitCode",
    "Invocation",
    "conclude",
    "exit_code_for",
    "failure_line",
    "hide_expected_tracebacks",
    "is_store_error",
    "output",
    "quiet_prefect_shutdown",
    "say",
    "traceback_helps",
]

logger = logging.getLogger("misterp.cli")


class ExitCode(IntEnum):
    """How a ``misterp`` command ended; scripts and schedulers branch on these."""

    #: Every model converged; for validate, demo and alerts: done as asked.
    OK = 0
    #: The wave was published, but some models failed, did not converge or are flagged by
    #: their base; their estimates are flagged and health.md lists them.
    FLAGGED = 1
    #: Invalid input or config (also a missing or unreadable config file); nothing was written.
    INVALID = 2
    #: Crashed or infrastructure: store unreachable after retries, a lost lease, a bug.
    CRASHED = 3
    #: Another run holds the wave's lock.
    LOCKED = 4


#: One line per exit code, for --help and the README (a test keeps the README in step).
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "every model converged",
    ExitCode.FLAGGED: "published, but some models failed, did not converge or are flagged by "
    "their base (see OUTPUT/WAVE/health.md)",
    ExitCode.INVALID: "invalid input or config, or a missing config file; nothing written",
    ExitCode.CRASHED: "crashed or infrastructure (store unreachable, lost run); "
    "re-run with the command its last line names",
    ExitCode.LOCKED: "the wave is locked by another run (--force takes it over)",
}


def _invalid_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the input or config is wrong": the user fixes them, not a retry."""
    from misterp.config import ConfigError
    from misterp.mrp.specs import FormulaError
    from misterp.mrp.staging import StagedWaveMissing
    from misterp.mrp.validation import InputValidationError

    return (ConfigError, InputValidationError, FormulaError, StagedWaveMissing)


def _locked_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "another run holds the wave": wait for it, or take over."""
    from misterp.lease import RunLocked

    return (RunLocked,)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code of a command that raised ``exc``: the one mapping from errors to codes.

    ``RunLocked`` -> 4; invalid config, input, formula or a wave never staged -> 2; anything
    else (``LeaseLost``, a store that stayed unreachable, an interrupt, a bug) -> 3.
    """
    if isinstance(exc, _locked_errors()):
        return ExitCode.LOCKED
    if isinstance(exc, _invalid_errors()):
        return ExitCode.INVALID
    return ExitCode.CRASHED


def _store_unavailable() -> type[BaseException]:
    """``StoreUnavailable``: a store outage after retries, its message naming the store."""
    from misterp.storage import StoreUnavailable

    return StoreUnavailable


def is_store_error(exc: BaseException) -> bool:
    """An I/O error from the file system or the object store (S3 through fsspec/botocore)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, (OSError, _store_unavailable())) or module in {
        "botocore",
        "aiobotocore",
        "s3fs",
        "aiohttp",
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


@dataclass
class Invocation:
    """What a failure line needs to know about the command: its name, store and re-run.

    A command fills in ``stores`` and ``rerun`` once it has read its config.
    """

    command: str
    stores: tuple[str, ...] = ()
    rerun: str | None = None
    #: Works the re-run command out when the command failed, from what the failure left (e.g.
    #: whether the wave was staged); ``rerun`` when it is None or cannot tell.
    resume: Callable[[BaseException], str | None] | None = None

    def rerun_after(self, exc: BaseException) -> str | None:
        """The command to run after ``exc``: ``resume``'s answer, else ``rerun``."""
        if self.resume is not None:
            try:
                return self.resume(exc) or self.rerun
            except Exception:  # a hint must never hide the failure it is for
                logger.debug("working out the re-run command failed", exc_info=True)
        return self.rerun

    def failed_store(self, exc: BaseException) -> str:
        """The store URI the error names, else every store of the command."""
        text = str(exc)
        named = [uri for uri in self.stores if uri.split("://", 1)[-1].rstrip("/") in text]
        return " or ".join(named or self.stores)


def failure_line(exc: BaseException, invocation: Invocation) -> str:
    """The message a failed command prints on stderr; its exit code is :func:`exit_code_for`.

    Invalid input and config print their own message (every problem, each with its fix). A
    crash prints one line: what failed (the store URI for an I/O error) and the re-run command.
    """
    code = exit_code_for(exc)
    if code is ExitCode.INVALID:
        return str(exc)
    if code is ExitCode.LOCKED:
        text = str(exc)
        if "--force" not in text:
            text += "; if that run is dead, take the wave over with --force"
        return text
    if isinstance(exc, KeyboardInterrupt):
        what = "interrupted"
    elif isinstance(exc, _store_unavailable()):
        what = _first_line(exc)  # names the store, the action and the cause
    elif is_store_error(exc) and invocation.stores:
        what = (
            f"store {invocation.failed_store(exc)} failed "
            f"({type(exc).__name__}: {_first_line(exc)})"
        )
    else:
        what = f"{type(exc).__name__}: {_first_line(exc)}".rstrip(": ")
    line = f"misterp {invocation.command} crashed: {what}"
    rerun = invocation.rerun_after(exc)
    if rerun:
        line += f"; re-run with: {rerun}"
    return line


def conclude(invocation: Invocation, action: Callable[[], ExitCode]) -> NoReturn:
    """Run a command's body and exit with its code; an error becomes its code and one line."""
    try:
        code = action()
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code_for(exc)
        if code is ExitCode.CRASHED:
            logger.debug("misterp %s crashed", invocation.command, exc_info=exc)
        quiet_prefect_shutdown()
        say(failure_line(exc, invocation), err=True, exit_code=code)
    raise typer.Exit(int(code))


def quiet_prefect_shutdown() -> None:
    """Keep the command's line last: the temporary Prefect server says goodbye at exit."""
    if "prefect" in sys.modules:
        prefect_logger = logging.getLogger("prefect")
        prefect_logger.setLevel(max(prefect_logger.getEffectiveLevel(), logging.WARNING))


@dataclass
class _Output:
    """How the command prints its own lines; set by the global options."""

    json_lines: bool = False


#: Set once by the global options (``--log-json``).
output = _Output()


def say(text: str, *, err: bool = False, exit_code: ExitCode | None = None) -> None:
    """Print one of the command's own lines: as is, or as a JSON object under --log-json."""
    if output.json_lines:
        fields = {} if exit_code is None else {"exit_code": int(exit_code)}
        text = json_line("ERROR" if err else "INFO", "misterp.cli", text, **fields)
    typer.echo(text, err=err)


def traceback_helps(exc: BaseException) -> bool:
    """Only a bug needs its traceback: invalid input, a lock or a store error says it all."""
    return exit_code_for(exc) is ExitCode.CRASHED and not is_store_error(exc)


def hide_expected_tracebacks() -> None:
    """Prefect logs errors in runs without the tracebacks that do not help (both CLIs)."""
    hide_tracebacks_of(lambda exc: not traceback_helps(exc))
