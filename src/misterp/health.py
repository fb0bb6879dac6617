"""The wave health report: every model's convergence on one page, problems first.

Nobody reads 1,000 trace plots. This turns the manifest into the page a person does read: counts
per status, every model that is not converged or failed with why, and the slowest fits. It is
written next to the estimates (``health.md``) and shown as Prefect artifacts by the flows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from misterp.fitting import CONVERGED, FAILED, NOT_CONVERGED

__all__ = ["HEALTH_FILE", "ModelHealth", "WaveHealth", "wave_health"]

HEALTH_FILE = "health.md"
#: How many of the slowest fits the report lists.
SLOWEST = 10


@dataclass(frozen=True)
class ModelHealth:
    """One model's line in the report: the diagnostics of its last attempt."""

    key: str
    status: str
    attempts: int
    r_hat_max: float | None
    ess_bulk_min: float | None
    ess_tail_min: float | None
    divergences: int | None
    bfmi_min: float | None
    seconds: float | None
    problem: str | None

    def row(self) -> dict[str, Any]:
        """A JSON-ready row (for the table artifact)."""
        return {
            "model": self.key,
            "status": self.status,
            "attempts": self.attempts,
            "r_hat_max": _round(self.r_hat_max, 3),
            "ess_bulk_min": _round(self.ess_bulk_min, 0),
            "ess_tail_min": _round(self.ess_tail_min, 0),
            "divergences": self.divergences,
            "bfmi_min": _round(self.bfmi_min, 2),
            "seconds": _round(self.seconds, 1),
            "problem": self.problem or "",
        }


@dataclass(frozen=True)
class WaveHealth:
    """Health of one published wave."""

    wave: str
    models: tuple[ModelHealth, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Models per status (every status present, zeros included)."""
        counts = {"models": len(self.models), CONVERGED: 0, NOT_CONVERGED: 0, FAILED: 0}
        for model in self.models:
            counts[model.status] = counts.get(model.status, 0) + 1
        return counts

    @property
    def problems(self) -> list[ModelHealth]:
        """Models whose estimates must not be read as fine: failed first, then not converged."""
        order = {FAILED: 0, NOT_CONVERGED: 1}
        bad = [m for m in self.models if m.status != CONVERGED]
        return sorted(bad, key=lambda m: (order.get(m.status, 2), m.key))

    @property
    def healthy(self) -> bool:
        """True when every model converged."""
        return not self.problems

    @property
    def slowest(self) -> list[ModelHealth]:
        """The slowest fits, slowest first."""
        timed = [m for m in self.models if m.seconds is not None]
        return sorted(timed, key=lambda m: -(m.seconds or 0.0))[:SLOWEST]

    def headline(self) -> str:
        """One line for a log, an alert or a flow-run state message."""
        counts = self.counts
        if self.healthy:
            return f"wave {self.wave}: all {counts['models']} models converged"
        return (
            f"wave {self.wave}: {counts[FAILED]} failed, {counts[NOT_CONVERGED]} not converged, "
            f"{counts[CONVERGED]} of {counts['models']} converged; their estimates are flagged"
        )

    def rows(self) -> list[dict[str, Any]]:
        """Every model, problems first (for the table artifact)."""
        problems = self.problems
        rest = sorted((m for m in self.models if m.status == CONVERGED), key=lambda m: m.key)
        return [m.row() for m in [*problems, *rest]]

    def to_markdown(self) -> str:
        """The report as Markdown: verdict, counts, problems, slowest fits."""
        counts = self.counts
        verdict = "healthy" if self.healthy else "NEEDS ATTENTION"
        lines = [
            f"# Wave {self.wave}: {verdict}",
            "",
            self.headline() + ".",
            "",
            "| status | models |",
            "|---|---:|",
            *(f"| {s} | {counts[s]} |" for s in (CONVERGED, NOT_CONVERGED, FAILED)),
            f"| **total** | **{counts['models']}** |",
            "",
        ]
        if self.problems:
            lines += [
                "## Models that need attention",
                "",
                "Their estimates are written with this status in `estimates.parquet`; do not "
                "report them as converged. `misterp rerun --wave "
                f"{self.wave}` refits only these.",
                "",
                *_table(self.problems, with_problem=True),
                "",
            ]
        if self.slowest:
            lines += ["## Slowest fits", "", *_table(self.slowest, with_problem=False), ""]
        return "\n".join(lines)


def wave_health(manifest: Mapping[str, Any]) -> WaveHealth:
    """The health of a wave from its manifest (the last attempt of every model)."""
    models = []
    for model in manifest["models"]:
        attempts: Sequence[Mapping[str, Any]] = model.get("attempts") or []
        last = attempts[-1] if attempts else {}
        report: Mapping[str, Any] = last.get("report") or {}
        models.append(
            ModelHealth(
                key=model["key"],
                status=model["status"],
                attempts=len(attempts),
                r_hat_max=report.get("r_hat_max"),
                ess_bulk_min=report.get("ess_bulk_min"),
                ess_tail_min=report.get("ess_tail_min"),
                divergences=report.get("divergences"),
                bfmi_min=report.get("bfmi_min"),
                seconds=model.get("seconds"),
                problem=_problem(model["status"], last, attempts),
            )
        )
    return WaveHealth(str(manifest["wave"]), tuple(models))


def _problem(
    status: str, last: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]]
) -> str | None:
    if status == CONVERGED:
        return None
    if not attempts:
        return "no fit recorded (lost worker or pod?)"
    error = last.get("error")
    if error:
        return str(error).splitlines()[0]
    return "; ".join(last.get("failures") or []) or "missed the convergence thresholds"


def _round(value: float | None, digits: int) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return round(float(value), digits)


def _fmt(value: Any) -> str:
    return "" if value is None else str(value)


def _table(models: Sequence[ModelHealth], *, with_problem: bool) -> list[str]:
    header = "| model | status | attempts | R-hat | bulk ESS | tail ESS | divergences | seconds |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
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
        ]
        if with_problem:
            cells.append(str(row["problem"]).replace("|", "/"))
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return lines
