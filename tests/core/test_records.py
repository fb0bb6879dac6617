"""Stored records: exact round trips, one currency rule, versions read or refused, never misread."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from misterp.config import SamplerConfig
from misterp.mrp.records import FitRecord, Manifest, ManifestModel
from misterp.mrp.specs import ModelSpec
from misterp.mrp.staging import StagedMarket, StagedPlan
from misterp.records import (
    SCHEMA_VERSION,
    Attempt,
    ConvergenceReport,
    FitSummary,
    RecordError,
    StatusCounts,
)
from misterp.status import FitStatus

SPEC = ModelSpec("DE", "aware_b1", "yes", "p(yes, n) ~ 1 + gender", brand="b1")
REPORT = ConvergenceReport(
    r_hat_max=math.nan,
    ess_bulk_min=350.0,
    ess_tail_min=410.0,
    divergences=3,
    bfmi_min=0.8,
    chains=4,
    draws=1000,
    seconds=2.5,
)
ATTEMPTS = (
    Attempt(
        sampler=SamplerConfig(target_accept=0.95),
        report=REPORT,
        status=FitStatus.NOT_CONVERGED,
        failures=("r_hat nan > 1.01", "3 divergences > 0"),
    ),
    Attempt(
        sampler=SamplerConfig(target_accept=0.99), report=None, status=FitStatus.FAILED,
        error="MemoryError: out of memory",
    ),
)  # fmt: skip


def _fit_record(**changes: object) -> FitRecord:
    values: dict[str, object] = {
        "key": SPEC.key,
        "spec": SPEC.to_dict(),
        "spec_hash": SPEC.spec_hash,
        "data_hash": "data",
        "settings_hash": "settings",
        "status": FitStatus.FAILED,
        "attempts": ATTEMPTS,
        "seconds": 4.0,
        "n_respondents": 120,
        "has_draws": False,
        "run_id": "run-1",
    }
    return FitRecord.model_validate(values | changes)


def _manifest() -> Manifest:
    model = ManifestModel(
        key=SPEC.key, spec=SPEC.to_dict(), spec_hash=SPEC.spec_hash, data_hash="data",
        status=FitStatus.FAILED, estimate_status=FitStatus.FAILED, attempts=ATTEMPTS,
        seconds=4.0, fit_id="f1", n_respondents=120, draws=None,
    )  # fmt: skip
    counts = StatusCounts(models=1, failed=1)
    return Manifest(
        wave="2026-10", input="s3://in/2026-10", input_hashes={"answers": "a"},
        versions={"misterp": "0.1"}, config={"demographics": ["gender"]}, counts=counts,
        wall_seconds=None, files={"estimates": "estimates.parquet"}, estimates_sha256="e" * 64,
        models=(model,), healthy=False,
    )  # fmt: skip


def _plan() -> StagedPlan:
    return StagedPlan(
        wave="2026-10",
        config={"input": "in", "output": "out", "demographics": ["gender"]},
        input_hashes={"answers": "a"},
        markets={"DE": StagedMarket(demographics=("gender",), groups=("all", "women"))},
        specs=(SPEC,),
    )


@pytest.mark.parametrize(
    "record", [_fit_record(), _manifest(), _plan()], ids=["fit", "manifest", "plan"]
)
def test_every_record_round_trips_exactly_through_its_stored_json(record: object) -> None:
    stored = record.to_json()  # type: ignore[attr-defined]
    again = type(record).from_json(stored, "x.json")  # type: ignore[attr-defined]
    # NaN is stored as null and read back as NaN: compare what is stored, and the fields
    assert again.to_json() == stored
    assert json.loads(stored)["schema_version"] == SCHEMA_VERSION
    assert b"NaN" not in stored


def test_a_nan_statistic_is_null_in_json_and_nan_again_when_read() -> None:
    record = FitRecord.from_json(_fit_record().to_json(), "x.json")
    first = record.attempts[0]
    assert first.report is not None
    assert math.isnan(first.report.r_hat_max)
    assert first.report.ess_bulk_min == 350.0
    assert first.sampler == SamplerConfig(target_accept=0.95)
    assert first.status is FitStatus.NOT_CONVERGED


def test_one_rule_says_whether_a_record_is_current_and_why_not() -> None:
    record = _fit_record()
    assert record.is_current(SPEC.spec_hash, "data", "settings")
    assert record.staleness("other", "data", "settings") == "spec changed"
    assert record.staleness(SPEC.spec_hash, "other", "settings") == "data changed"
    assert record.staleness(SPEC.spec_hash, "data", "other") == "settings changed"


def test_a_record_from_an_older_misterp_is_refused_with_what_to_do() -> None:
    payload = json.loads(_fit_record().to_json())
    del payload["schema_version"]  # as written before records were versioned
    with pytest.raises(RecordError, match=r"fits/k\.json: fit record was written by an older "):
        FitRecord.from_json(json.dumps(payload), "fits/k.json")


def test_a_record_from_a_newer_misterp_is_refused_not_misread() -> None:
    payload = json.loads(_manifest().to_json()) | {"schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(RecordError, match=r"manifest has schema version 2, newer .* upgrade"):
        Manifest.from_json(json.dumps(payload), "2026-10/manifest.json")


def test_a_corrupt_or_foreign_record_names_the_file_and_the_field() -> None:
    with pytest.raises(RecordError, match=r"plan\.json: not valid JSON"):
        StagedPlan.from_json(b'{"wave": ', "plan.json")
    payload = json.loads(_fit_record().to_json()) | {"status": "fine", "surprise": 1}
    with pytest.raises(RecordError, match=r"not a valid fit record: status: .*surprise"):
        FitRecord.from_json(json.dumps(payload), "k.json")


def test_the_summary_of_a_fit_is_its_last_attempt() -> None:
    summary = FitSummary.from_record(_fit_record())
    assert summary.status is FitStatus.FAILED
    assert summary.attempts == 2
    assert summary.error == "MemoryError: out of memory"
    assert summary.r_hat_max is None  # the last attempt raised: no diagnostics


def test_the_core_imports_without_prefect_and_reads_statuses_without_statistics() -> None:
    code = (
        "import sys\n"
        "import misterp, misterp.status, misterp.records, misterp.health, misterp.progress\n"
        "light = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'prefect', 'bambi', 'pymc', 'pytensor', 'arviz', 'nutpie'})\n"
        "import misterp.config, misterp.storage, misterp.fitting, misterp.fitstore\n"
        "import misterp.mrp.wave, misterp.mrp.staging, misterp.mrp.validation\n"
        "print(light, 'prefect' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[] False"
