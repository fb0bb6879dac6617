"""The wave health report from hand-built manifests: counts, problems first, why, slowest."""

from __future__ import annotations

import re
from typing import Any

from misterp.mrp.health import wave_health
from misterp.mrp.records import Manifest
from misterp.records import StatusCounts
from misterp.status import FitStatus


def _attempt(
    status: str,
    *,
    r_hat: float = 1.001,
    ess: float = 900.0,
    divergences: int = 0,
    failures: tuple[str, ...] = (),
    error: str | None = None,
) -> dict[str, Any]:
    report = None
    if error is None:
        report = {
            "r_hat_max": r_hat,
            "ess_bulk_min": ess,
            "ess_tail_min": ess + 10,
            "divergences": divergences,
            "bfmi_min": None,  # NaN in the report becomes None in JSON
            "chains": 4,
            "draws": 1000,
            "seconds": 1.0,
        }
    return {
        "sampler": {"target_accept": 0.95},
        "report": report,
        "status": status,
        "error": error,
        "failures": list(failures),
    }


def _models() -> list[dict[str, Any]]:
    return [
            {"key": "DE/aware_b1/yes", "status": "converged", "seconds": 3.0,
             "attempts": [_attempt("converged")]},
            {"key": "DE/aware_b2/yes", "status": "not_converged", "seconds": 9.5,
             "attempts": [
                 _attempt("not_converged", divergences=12, failures=("12 divergences > 0",)),
                 _attempt("not_converged", r_hat=1.03, ess=150.0,
                          failures=("r_hat 1.030 > 1.01", "bulk ESS 150 < 400")),
             ]},
            {"key": "DE/assoc_b1/green", "status": "failed", "seconds": 0.2,
             "attempts": [_attempt("failed", error="MemoryError: out of memory\ntraceback...")]},
            {"key": "AT/aware_b1/yes", "status": "failed", "seconds": None, "attempts": []},
            {"key": "AT/aware_b2/yes", "status": "converged", "seconds": 4.0,
             "attempts": [_attempt("converged")]},
    ]  # fmt: skip


def _manifest(models: list[dict[str, Any]] | None = None) -> Manifest:
    """A manifest around hand-written models; each model's estimates keep its own status
    unless it names an ``estimate_status``, and the counts are computed as publish does."""
    models = _models() if models is None else models
    full = []
    for model in models:
        market, question, option = model["key"].split("/")
        full.append(
            {
                "spec": {"market": market, "question_id": question, "option": option,
                         "base_question": model.pop("base", None), "base_option": "yes"},
                "spec_hash": "s", "data_hash": "d", "fit_id": None, "n_respondents": 50,
                "draws": None, "estimate_status": model["status"], **model,
            }
        )  # fmt: skip
    own = {m["key"]: FitStatus(m["status"]) for m in full}
    published = {m["key"]: FitStatus(m["estimate_status"]) for m in full}
    counts = StatusCounts.count(own, published)
    return Manifest.model_validate(
        {
            "wave": "2026-10", "input": "in", "input_hashes": {}, "versions": {}, "config": {},
            "counts": counts.model_dump(), "wall_seconds": None, "files": {},
            "estimates_sha256": "0", "models": full, "healthy": counts.healthy,
        }
    )  # fmt: skip


def test_counts_every_status_including_zeros() -> None:
    health = wave_health(_manifest())
    assert health.counts == StatusCounts(models=5, converged=2, not_converged=1, failed=2)
    assert not health.healthy


def test_problems_come_first_failed_before_not_converged_with_their_reason() -> None:
    health = wave_health(_manifest())
    problems = [(m.key, m.status, m.problem) for m in health.problems]
    assert problems == [
        ("AT/aware_b1/yes", "failed", "no fit recorded (lost worker or pod?)"),
        ("DE/assoc_b1/green", "failed", "MemoryError: out of memory"),
        ("DE/aware_b2/yes", "not_converged", "r_hat 1.030 > 1.01; bulk ESS 150 < 400"),
    ]
    rows = health.rows()
    assert [r["model"] for r in rows[:3]] == [key for key, _, _ in problems]
    # the last attempt's diagnostics, not the first's
    assert rows[2]["attempts"] == 2
    assert rows[2]["r_hat_max"] == 1.03
    assert rows[2]["divergences"] == 0
    assert {r["problem"] for r in rows[3:]} == {""}


def test_slowest_fits_are_sorted_and_skip_models_without_a_time() -> None:
    health = wave_health(_manifest())
    assert [m.key for m in health.slowest] == [
        "DE/aware_b2/yes",
        "AT/aware_b2/yes",
        "DE/aware_b1/yes",
        "DE/assoc_b1/green",
    ]


def test_markdown_names_every_problem_and_how_to_refit_it() -> None:
    text = wave_health(_manifest()).to_markdown()
    assert text.startswith("# Wave 2026-10: NEEDS ATTENTION")
    assert "| not_converged | 1 |" in text
    assert "| failed | 2 |" in text
    attention = text.split("## Models that need attention")[1].split("## Slowest fits")[0]
    for key in ("AT/aware_b1/yes", "DE/assoc_b1/green", "DE/aware_b2/yes"):
        assert f"`{key}`" in attention
    assert "`DE/aware_b1/yes`" not in attention
    assert "misterp rerun --wave 2026-10" in attention


def test_a_wave_where_everything_converged_is_healthy_and_says_so() -> None:
    health = wave_health(_manifest([m for m in _models() if m["status"] == "converged"]))
    assert health.healthy
    assert health.headline() == "wave 2026-10: all 2 models converged"
    assert "need attention" not in health.to_markdown()


def test_models_flagged_by_their_base_are_counted_once_and_said_the_same_way() -> None:
    models = [m for m in _models() if m["key"] != "AT/aware_b1/yes"]
    models.append(
        {"key": "DE/consider_b2/yes", "status": "converged", "seconds": 2.0,
         "estimate_status": "not_converged", "base": "aware_b2",
         "attempts": [_attempt("converged")]}
    )  # fmt: skip
    health = wave_health(_manifest(models))

    # its own fit converged; its estimates are flagged because its base did not
    assert health.counts == StatusCounts(
        models=5, converged=3, not_converged=1, failed=1, flagged_by_base=1
    )
    assert health.headline() == (
        "wave 2026-10: 1 failed, 1 not converged, 3 of 5 converged; 1 more flagged because "
        "their base did not converge; their estimates are flagged"
    )
    flagged = {m.key: m for m in health.problems}["DE/consider_b2/yes"]
    assert flagged.status is FitStatus.NOT_CONVERGED
    assert flagged.problem == "its base model DE/aware_b2/yes is not_converged"
    assert "| flagged by their base | 1 |" in health.to_markdown()


def test_a_pipe_in_a_model_key_does_not_break_the_markdown_tables() -> None:
    models = _models()
    models[2]["key"] = "DE/assoc|b1/green"
    text = wave_health(_manifest(models)).to_markdown()
    cells = re.compile(r"(?<!\\)\|")  # GitHub tables split cells on unescaped pipes only
    columns = 0
    for line in text.splitlines():
        if line.startswith("| model"):
            columns = len(cells.split(line))
        elif line.startswith("| `"):
            assert len(cells.split(line)) == columns, line
    assert "`DE/assoc\\|b1/green`" in text


def test_health_says_how_long_each_fit_ran_and_what_limited_it() -> None:
    models = _models()
    models[0]["attempts"][0] |= {"limited_by": "R-hat of 1|age_sigma"}
    models[0]["attempts"][0]["report"]["draws"] = 500
    models[4]["attempts"][0] |= {"limited_by": "estimand tail ESS of AT/aware_b2/yes in all"}
    models[4]["attempts"][0]["report"]["draws"] = 250
    health = wave_health(_manifest(models))
    text = health.to_markdown()

    rows = {m.key: (m.draws, m.limited_by) for m in health.models}
    assert rows["DE/aware_b1/yes"] == (500, "R-hat of 1|age_sigma")
    assert rows["AT/aware_b2/yes"] == (250, "estimand tail ESS of AT/aware_b2/yes in all")
    section = text.split("## How long the fits ran", 1)[1].split("## Slowest", 1)[0]
    assert "| 250 | 1 |" in section
    assert "| 500 | 1 |" in section
    assert "| 1000 | 1 |" in section  # the not converged model's last attempt
    assert "| R-hat | 1 |" in section
    assert "| estimand tail ESS | 1 |" in section
    assert "| not recorded | 1 |" in section  # a record from before issue 23
    assert "| 500 | R-hat of 1\\|age_sigma |" in text  # the slowest table names it (escaped)
