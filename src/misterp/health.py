"""The health report of a run: every model's convergence on one page, problems first.

Nobody reads 1,000 trace plots. This turns the manifest into the page a person does read: counts
per status, every model that is not converged or failed with why, and the slowest fits. It is
written next to the estimates (``health.md``) and shown as Prefect artifacts by the flows. It
imports no statistics library: reading a manifest needs none.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from misterp.records import Attempt, StatusCounts
from misterp.status import FitStatus

__all__ = [
    "HEALTH_FILE",
    "ModelHealth",
    "RunHealth",
    "attempts_problem",
    "markdown_cell",
    "model_health",
]

HEALTH_FILE = "health.md"
#: How many of the slowest fits the report lists.
SLOWEST = 10


def markdown_cell(text: object) -> str:
    r"""Text safe inside a Markdown table cell: pipes escaped, one line.

    >>> markdown_cell("a|b\nc")
    'a\\|b c'
    """
    return "" if text is None else str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class ModelHealth:
    """One model's line in the report: the diagnostics of its last attempt.

    ``status`` is the status its estimates were published with: the model's own, or its base
    model's when that is worse.
    """

    key: str
    status: FitStatus
    attempts: int
    r_hat_max: float | None
    ess_bulk_min: float | None
    ess_tail_min: float | None
    divergences: int | None
    bfmi_min: float | None
    seconds: float | None
    problem: str | None
    #: Draws per chain the last attempt was judged on (a fit stops at the first look that
    #: passes) and the criterion that decided it (``ConvergenceReport.limited_by``).
    draws: int | None = None
    limited_by: str | None = None

    def row(self) -> dict[str, Any]:
        """A JSON-ready row (for the table artifact)."""
        return {
            "model": self.key,
            "status": self.status.value,
            "attempts": self.attempts,
            "r_hat_max": _round(self.r_hat_max, 3),
            "ess_bulk_min": _round(self.ess_bulk_min, 0),
            "ess_tail_min": _round(self.ess_tail_min, 0),
            "divergences": self.divergences,
            "bfmi_min": _round(self.bfmi_min, 2),
            "seconds": _round(self.seconds, 1),
            "draws": self.draws,
            "limited_by": self.limited_by or "",
            "problem": self.problem or "",
        }


@dataclass(frozen=True)
class RunHealth:
    """Health of one published run of any family: a tracker wave, a media-mix run.

    The family names what a run is (``subject``), the command that refits only its problems
    and the file whose rows carry each model's status.
    """

    run: str
    counts: StatusCounts
    models: tuple[ModelHealth, ...]
    #: What ``run`` names, in the headline and the title: ``wave``, ``media-mix run``.
    subject: str
    #: The command that refits only the problems.
    rerun: str
    #: The file whose rows carry each model's status.
    results_file: str

    @property
    def problems(self) -> list[ModelHealth]:
        """Models whose estimates must not be read as fine: failed first, then not converged."""
        bad = [m for m in self.models if m.status.needs_attention]
        return sorted(bad, key=lambda m: (-m.status.severity, m.key))

    @property
    def healthy(self) -> bool:
        """True when every model converged and no estimate is flagged."""
        return self.counts.healthy and not self.problems

    @property
    def slowest(self) -> list[ModelHealth]:
        """The slowest fits, slowest first."""
        timed = [m for m in self.models if m.seconds is not None]
        return sorted(timed, key=lambda m: -(m.seconds or 0.0))[:SLOWEST]

    def headline(self) -> str:
        """One line for a log, an alert, a flow-run state message and the CLI."""
        text = f"{self.subject} {self.run}: {self.counts.sentence()}"
        return text if self.healthy else f"{text}; their estimates are flagged"

    def rows(self) -> list[dict[str, Any]]:
        """Every model, problems first (for the table artifact)."""
        problems = self.problems
        rest = sorted((m for m in self.models if not m.status.needs_attention), key=lambda m: m.key)
        return [m.row() for m in [*problems, *rest]]

    def _what_limited(self) -> list[str]:
        """How long the fits ran and what decided it: draws per chain and criterion, counted."""
        judged = [m for m in self.models if m.draws is not None]
        if not judged:
            return []
        by_draws = Counter(m.draws for m in judged)
        by_criterion = Counter(_criterion(m.limited_by) for m in judged)
        return [
            "## How long the fits ran",
            "",
            "A fit is judged after every few hundred draws and stops at the first look that "
            "passes the convergence policy; the criterion nearest its threshold decided.",
            "",
            "| draws per chain | models |",
            "|---:|---:|",
            *(f"| {draws} | {count} |" for draws, count in sorted(by_draws.items())),
            "",
            "| limited by | models |",
            "|---|---:|",
            *(f"| {markdown_cell(name)} | {count} |" for name, count in by_criterion.most_common()),
            "",
        ]

    def to_markdown(self) -> str:
        """The report as Markdown: verdict, counts, problems, slowest fits."""
        counts = self.counts
        verdict = "healthy" if self.healthy else "NEEDS ATTENTION"
        lines = [
            f"# {self.subject.capitalize()} {markdown_cell(self.run)}: {verdict}",
            "",
            markdown_cell(self.headline()) + ".",
            "",
            "| status | models |",
            "|---|---:|",
            *(f"| {s.value} | {counts.of(s)} |" for s in FitStatus),
        ]
        if counts.flagged_by_base:
            lines.append(f"| flagged by their base | {counts.flagged_by_base} |")
        lines += [f"| **total** | **{counts.models}** |", ""]
        if self.problems:
            rerun = self.rerun
            lines += [
                "## Models that need attention",
                "",
                f"Their estimates are written with this status in `{self.results_file}`; do not "
                f"report them as converged. `{markdown_cell(rerun)}` refits only these.",
                "",
                *_table(self.problems, with_problem=True),
                "",
            ]
        lines += self._what_limited()
        if self.slowest:
            lines += ["## Slowest fits", "", *_table(self.slowest, with_problem=False), ""]
        return "\n".join(lines)


def model_health(
    key: str,
    status: FitStatus,
    attempts: Sequence[Attempt],
    seconds: float | None,
    problem: str | None,
) -> ModelHealth:
    """A model's line in the report from its attempts: the last attempt's diagnostics."""
    last = attempts[-1] if attempts else None
    report = last.report if last is not None else None
    return ModelHealth(
        key=key,
        status=status,
        attempts=len(attempts),
        r_hat_max=report.r_hat_max if report else None,
        ess_bulk_min=report.ess_bulk_min if report else None,
        ess_tail_min=report.ess_tail_min if report else None,
        divergences=report.divergences if report else None,
        bfmi_min=report.bfmi_min if report else None,
        seconds=seconds,
        problem=problem,
        draws=report.draws if report else None,
        limited_by=last.limited_by if last is not None else None,
    )


def attempts_problem(attempts: Sequence[Attempt]) -> str:
    """Why a fit that needs attention does, from its attempts: the last one's error or misses.

    >>> attempts_problem([])
    'no fit recorded (lost worker or pod?)'
    """
    if not attempts:
        return "no fit recorded (lost worker or pod?)"
    last = attempts[-1]
    if last.error:
        return last.error.splitlines()[0]
    return "; ".join(last.failures) or "missed the convergence thresholds"


def _criterion(limited_by: str | None) -> str:
    """The statistic of a ``limited_by`` without its quantity ("R-hat of 1|age" -> "R-hat").

    >>> _criterion("estimand tail ESS of DE/aware/yes in all"), _criterion(None)
    ('estimand tail ESS', 'not recorded')
    """
    if limited_by is None:
        return "not recorded"
    return limited_by.split(" of ", 1)[0]


def _round(value: float | None, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def _table(models: Sequence[ModelHealth], *, with_problem: bool) -> list[str]:
    header = (
        "| model | status | attempts | R-hat | bulk ESS | tail ESS | divergences | seconds "
        "| draws | limited by |"
    )
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
    if with_problem:
        header += " problem |"
        rule += "---|"
    lines = [header, rule]
    for model in models:
        row = model.row()
        cells = [
            f"`{row['model']}`",
            row["status"],
            row["attempts"],
            row["r_hat_max"],
            row["ess_bulk_min"],
            row["ess_tail_min"],
            row["divergences"],
            row["seconds"],
            row["draws"],
            row["limited_by"],
        ]
        if with_problem:
            cells.append(row["problem"])
        lines.append("| " + " | ".join(markdown_cell(c) for c in cells) + " |")
    return lines
