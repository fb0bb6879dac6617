"""The ``misterp`` command: exit codes and their one line, validate without Prefect, logs."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows import cli
from flows.cli import EXIT_CODE_MEANINGS, ExitCode, Invocation, app, exit_code_for, failure_line
from flows.logs import prefect_logging_env
from misterp import __version__
from misterp.config import ConfigError
from misterp.lease import LeaseLost, RunLocked
from misterp.mrp.simulate import SimulatedWave, WaveTruthSpec, simulate_wave
from misterp.mrp.specs import FormulaError
from misterp.mrp.staging import StagedWaveMissing
from misterp.mrp.validation import InputValidationError, ValidationReport
from misterp.storage import ResultStore, StoreUnavailable
from support import PrefectServer

ROOT = Path(__file__).resolve().parents[2]
WAVE = "2026-10"
MARKETS = ("DE", "FR")
BRANDS = ("brand01",)
OPTIONS = ("innovative",)
N_RESPONDENTS = 200


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """The command sets Prefect's environment and a root log handler; undo both after a test."""
    environ = dict(os.environ)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    misterp_level = logging.getLogger("misterp").level
    yield
    os.environ.clear()
    os.environ.update(environ)
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("misterp").setLevel(misterp_level)


@pytest.fixture(scope="module")
def simulated() -> SimulatedWave:
    spec = WaveTruthSpec(
        markets=MARKETS,
        brands=BRANDS,
        n_respondents=N_RESPONDENTS,
        rare_brand=None,
        association_options=OPTIONS,
    )
    return simulate_wave(20261001, spec)


@pytest.fixture(scope="module")
def wave_config(simulated: SimulatedWave, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid wave folder and its config file; the config's output is never written."""
    root = tmp_path_factory.mktemp("cli-wave")
    simulated.write(str(root / "input"))
    config = simulated.config(str(root / "input"), str(root / "results"))
    config["wave"] = WAVE
    path = root / "wave.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def invoke(*args: str) -> SimpleNamespace:
    result = CliRunner().invoke(app, list(args))
    # An exception that escaped the command would be a traceback for a user.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return SimpleNamespace(code=result.exit_code, out=result.stdout, err=result.stderr)


#: The entry point's function, in a fresh interpreter.
MAIN = "import sys; from flows.cli import main; sys.exit(main())"
#: The same with fits that sample nothing (tests/flows/no_mcmc_fits.py), for runs that fit.
MAIN_WITHOUT_MCMC = (
    "import sys\n"
    "from tests.flows.no_mcmc_fits import without_mcmc\n"
    "from flows.cli import main\n"
    "with without_mcmc():\n"
    "    code = main()\n"
    "sys.exit(code)\n"
)


def misterp(
    *args: str, env: dict[str, str] | None = None, code: str = MAIN
) -> subprocess.CompletedProcess[str]:
    """The command in a fresh interpreter, through the entry point's function (``code``)."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.code == 0
    assert result.out == f"misterp {__version__}\n"


@pytest.mark.parametrize(
    "command", [["run"], ["validate"], ["rerun", "--wave", WAVE]], ids=["run", "validate", "rerun"]
)
def test_a_missing_config_file_exits_2_with_one_line_naming_it(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "wave.yaml"
    result = invoke(*command, "--config", str(missing))
    assert result.code == ExitCode.INVALID == 2
    assert result.err == f"config file not found: {missing}\n"
    assert result.out == ""


def test_a_missing_config_file_prints_no_traceback_from_the_entry_point(tmp_path: Path) -> None:
    missing = tmp_path / "wave.yaml"
    process = misterp("run", "--config", str(missing))
    assert process.returncode == 2
    assert "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines()[-1] == f"config file not found: {missing}"


def test_a_config_typo_exits_2_with_a_did_you_mean_hint(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text("input: in\noutput: out\ndemographics: [age]\nsamplr: {draws: 100}\n")
    result = invoke("validate", "--config", str(path))
    assert result.code == 2
    assert f"{path}: invalid config" in result.err
    assert "unknown key 'samplr' (did you mean 'sampler'?)" in result.err


def test_a_config_that_is_not_yaml_exits_2_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wave.yaml"
    path.write_text("input: [unclosed\n")
    result = invoke("run", "--config", str(path))
    assert result.code == 2
    assert result.err.startswith(f"config file {path} is not valid YAML: ")
    assert len(result.err.splitlines()) == 1


def test_validate_on_a_valid_wave_exits_0_with_the_models_planned(wave_config: Path) -> None:
    result = invoke("validate", "--config", str(wave_config))
    assert result.code == 0, result.err
    # Each brand has an awareness, a consideration and a multi-choice association question
    # (one model per option), in every market.
    models = len(MARKETS) * len(BRANDS) * (2 + len(OPTIONS))
    assert result.out == (
        f"wave {WAVE} is valid: {len(MARKETS) * N_RESPONDENTS} respondents, "
        f"{len(MARKETS)} markets ({', '.join(MARKETS)}), {models} models planned, "
        "target groups: all, women_18_34, high_education, men_55_plus\n"
    )


def test_validate_on_a_broken_wave_exits_2_listing_every_problem(
    simulated: SimulatedWave, wave_config: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    simulated.write(str(broken))
    respondents = pd.read_csv(broken / "respondents.csv", dtype=str)
    respondents.loc[2, "region"] = "atlantis"  # CSV line 4
    respondents.to_csv(broken / "respondents.csv", index=False)
    answers = pd.read_csv(broken / "answers.csv")
    answers.loc[0, "selected"] = 2  # CSV line 2
    answers.to_csv(broken / "answers.csv", index=False)

    result = invoke("validate", "--config", str(wave_config), "--input", str(broken))

    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith("Input validation failed: 2 problems, nothing was written")
    assert "respondents.csv, column 'region', row 4: value 'atlantis'" in result.err
    assert "answers.csv, column 'selected', row 2" in result.err


def test_validate_on_a_market_with_zero_census_exits_2_naming_file_market_and_fix(
    simulated: SimulatedWave, wave_config: Path, tmp_path: Path
) -> None:
    """Issue 26: a zero census crashed in raking (exit 3) and suggested a re-run."""
    zero = tmp_path / "zero-census"
    simulated.write(str(zero))
    census = pd.read_csv(zero / "poststrat.csv", dtype={"population": float})
    census.loc[census["market"] == "FR", "population"] = 0.0
    census.to_csv(zero / "poststrat.csv", index=False)

    result = invoke("validate", "--config", str(wave_config), "--input", str(zero))

    assert result.code == 2, result.err
    assert result.err.startswith("Input validation failed: 1 problem, nothing was written")
    assert "poststrat.csv, column 'population'" in result.err
    assert "market FR: population is 0 in every cell" in result.err
    assert "rerun" not in result.err


@pytest.fixture(scope="module")
def validate_in_fresh_interpreter(wave_config: Path) -> subprocess.CompletedProcess[str]:
    """``misterp --log-json validate`` in a new process; stdout ends with what it imported."""
    code = (
        "import sys\n"
        "from flows.cli import main\n"
        f"code = main(['--log-json', 'validate', '--config', {str(wave_config)!r}])\n"
        "print(code, 'prefect' in sys.modules)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_validate_does_not_import_prefect(
    validate_in_fresh_interpreter: subprocess.CompletedProcess[str],
) -> None:
    process = validate_in_fresh_interpreter
    assert process.stdout.splitlines()[-1] == "0 False", process.stderr


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("bad"), ExitCode.INVALID),
        (InputValidationError(ValidationReport([])), ExitCode.INVALID),
        (FormulaError("bad formula"), ExitCode.INVALID),
        (StagedWaveMissing("never staged"), ExitCode.INVALID),
        (RunLocked("wave 2026-10 is being run by run abc", "2026-10", None), ExitCode.LOCKED),
        (LeaseLost("run abc lost wave 2026-10", "2026-10", "abc", None), ExitCode.CRASHED),
        (StoreUnavailable("s3://b/out", "reading", TimeoutError("slow")), ExitCode.CRASHED),
        (OSError("disk"), ExitCode.CRASHED),
        (RuntimeError("bug"), ExitCode.CRASHED),
        (KeyboardInterrupt(), ExitCode.CRASHED),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_each_error_maps_to_its_exit_code(exc: BaseException, code: ExitCode) -> None:
    assert exit_code_for(exc) is code


def test_exit_codes_are_0_to_4() -> None:
    assert [int(code) for code in ExitCode] == [0, 1, 2, 3, 4]
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)


def test_a_crash_line_names_the_store_that_failed_and_the_rerun_command() -> None:
    invocation = Invocation(
        "run",
        stores=("s3://tracker/waves/2026-10", "s3://tracker/results"),
        rerun="misterp rerun --wave 2026-10 --config wave.yaml",
    )
    exc = ConnectionError('Could not connect to "http://minio:9000/tracker/results/2026-10/x"')
    assert failure_line(exc, invocation) == (
        "misterp run crashed: store s3://tracker/results failed (ConnectionError: Could not "
        'connect to "http://minio:9000/tracker/results/2026-10/x"); '
        "re-run with: misterp rerun --wave 2026-10 --config wave.yaml"
    )


def test_a_store_outage_during_validate_exits_3_with_one_line(
    wave_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(config: object) -> None:
        raise StoreUnavailable("s3://tracker/waves/2026-10", "reading respondents", TimeoutError())

    monkeypatch.setattr("misterp.mrp.prepare.prepare_wave", unreachable)
    result = invoke("validate", "--config", str(wave_config))
    assert result.code == 3
    assert result.err.startswith(
        "misterp validate crashed: store s3://tracker/waves/2026-10 is unavailable: "
        "reading respondents failed with TimeoutError"
    )
    assert result.err.rstrip().endswith(f"; re-run with: misterp validate --config {wave_config}")
    assert len(result.err.splitlines()) == 1


def _run_that_crashes(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """``misterp run`` whose flow raises ``exc``, without starting a Prefect server."""
    import contextlib

    def crashing_flow(**kwargs: object) -> None:
        raise exc

    monkeypatch.setattr("flows.runtime.local_prefect_api", contextlib.nullcontext)
    monkeypatch.setattr("flows.wave.run_wave", crashing_flow)


def test_a_run_that_crashed_before_staging_suggests_run_not_rerun(
    wave_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: ``misterp rerun`` of a wave never staged answers 'never prepared'."""
    _run_that_crashes(monkeypatch, ConnectionError("endpoint lost"))
    output = tmp_path / "results"
    result = invoke("run", "--config", str(wave_config), "--output", str(output))
    assert result.code == 3
    assert result.err.rstrip().endswith(
        f"re-run with: misterp run --wave {WAVE} --config {wave_config} --output {output}"
    )


def test_a_run_that_crashed_after_staging_suggests_rerun(
    wave_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from misterp.mrp.config import load_config
    from misterp.mrp.prepare import prepare_wave
    from misterp.mrp.staging import stage_wave

    output = tmp_path / "results"
    resolved = load_config(str(wave_config)).resolved(wave=WAVE, output=str(output))
    stage_wave(prepare_wave(resolved), ResultStore(str(output)))
    _run_that_crashes(monkeypatch, ConnectionError("endpoint lost"))

    result = invoke("run", "--config", str(wave_config), "--output", str(output))

    assert result.code == 3
    assert result.err.rstrip().endswith(
        f"re-run with: misterp rerun --wave {WAVE} --config {wave_config} --output {output}"
    )


def test_a_locked_line_says_how_to_take_the_wave_over() -> None:
    exc = RunLocked("wave 2026-10 is being run by run abc on host h", "2026-10", None)
    assert failure_line(exc, Invocation("run")) == (
        "wave 2026-10 is being run by run abc on host h; "
        "if that run is dead, take the wave over with --force"
    )


def test_the_top_level_help_lists_every_exit_code() -> None:
    result = invoke("--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"{int(code)}: {meaning}" in text


@pytest.mark.parametrize(
    "command", [["run"], ["rerun"], ["validate"], ["demo"], ["alerts", "install"]], ids=str
)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.code == 0
    assert f"Example: misterp {command[0]}" in " ".join(result.out.split()).replace(
        "PREFECT_API_URL=http://prefect:4200/api ", ""
    )


def test_the_readme_lists_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run a wave", 1)[1].split("\n## ", 1)[0]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", section, re.MULTILINE), code


def test_the_batch_size_default_is_the_dispatchers() -> None:
    from flows.dispatch import DEFAULT_BATCH_SIZE

    assert cli.DEFAULT_BATCH_SIZE == DEFAULT_BATCH_SIZE


def test_log_json_writes_one_json_object_per_line(
    validate_in_fresh_interpreter: subprocess.CompletedProcess[str],
) -> None:
    process = validate_in_fresh_interpreter
    records = [json.loads(line) for line in process.stderr.splitlines() if line.strip()]
    planned = [r for r in records if r["logger"] == "misterp.mrp.prepare"]
    assert len(planned) == 1
    assert planned[0]["level"] == "INFO"
    assert "models planned" in planned[0]["message"]
    # balance's banner and its "No weights passed" warning would be lines of their own.
    assert {r["logger"].split(".")[0] for r in records} == {"misterp"}
    outcome = json.loads(process.stdout.splitlines()[0])
    assert outcome["logger"] == "misterp.cli"
    assert outcome["exit_code"] == 0
    assert outcome["message"].startswith(f"wave {WAVE} is valid: ")


def test_log_json_reaches_prefects_console_in_fit_processes() -> None:
    """A process that inherits the command's environment (a fit worker) logs JSON too."""
    code = (
        "import logging\n"
        "from prefect import flow  # configures Prefect's logging, as in a fit process\n"
        "logging.getLogger('misterp.fit').warning('fit %s did not converge', 'DE/aware/yes')\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **prefect_logging_env("INFO", json_lines=True)},
        timeout=300,
    )
    assert process.returncode == 0, process.stderr
    line = json.loads(process.stderr.strip().splitlines()[-1])
    assert line["logger"] == "misterp.fit"
    assert line["level"] == "WARNING"
    assert line["message"] == "fit DE/aware/yes did not converge"


def test_log_level_warning_silences_info(wave_config: Path) -> None:
    result = invoke("--log-level", "warning", "validate", "--config", str(wave_config))
    assert result.code == 0
    assert result.err == ""


@pytest.mark.slow
def test_a_locked_wave_exits_4_and_force_takes_it_over(
    tmp_path: Path, prefect_api: PrefectServer
) -> None:
    """End to end through Prefect: the lock's exit code, --force reaching the flow, the last line.

    One market and one brand keep it to three fits, which sample nothing (plumbing, not
    statistics). The locked run uses the session's Prefect server (as with ``PREFECT_API_URL``
    exported); the forced run, which fits and publishes, starts its own temporary one, as the
    command does by default.
    """
    from misterp.lease import acquire_lease
    from misterp.storage import ResultStore
    from support import PLUMBING

    spec = WaveTruthSpec(
        markets=("DE",),
        brands=BRANDS,
        n_respondents=N_RESPONDENTS,
        rare_brand=None,
        association_options=OPTIONS,
    )
    wave = simulate_wave(20261002, spec)
    wave.write(str(tmp_path / "input"))
    config = {
        **wave.config(str(tmp_path / "input"), str(tmp_path / "results")),
        **PLUMBING,
        "workers": 1,
    }
    path = tmp_path / "wave.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # A run that died holding the lease: its heartbeat stopped, the lease is not stale yet.
    acquire_lease(ResultStore(str(tmp_path / "results")), WAVE, heartbeat=False)

    locked = misterp(
        "run", "--config", str(path), "--wave", WAVE, env={"PREFECT_API_URL": prefect_api.api_url}
    )
    assert locked.returncode == 4, locked.stderr[-2000:]
    last = locked.stderr.splitlines()[-1]
    assert last.startswith(f"wave {WAVE} in {tmp_path / 'results'} is being run by run ")
    assert "--force" in last
    assert "Traceback" not in locked.stderr

    os.environ.pop("PREFECT_API_URL", None)  # restored after the test
    forced = misterp(
        "run", "--config", str(path), "--wave", WAVE, "--force", code=MAIN_WITHOUT_MCMC
    )
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert forced.stdout.splitlines()[-1] == f"wave {WAVE}: all 3 models converged"


def test_a_wave_id_that_is_no_period_validates_and_runs_alike(
    tmp_path: Path, prefect_api: PrefectServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a tracking section, ``validate`` and ``run`` both accept ``w1`` (issue 26).

    Tracking skips an id that is no period (README); the fits read the staged plan back and
    once refused what validation had accepted, after the lease and staged/ were written.
    Three fits that sample nothing, on the session's Prefect server.
    """
    import functools

    from tests.flows.no_mcmc_fits import fit_without_mcmc

    import flows.wave
    from flows.dispatch import fit_in_processes
    from misterp.storage import ResultStore
    from misterp.tracking.update import TRACKING_FILE
    from support import PLUMBING

    monkeypatch.setattr(
        flows.wave, "fit_in_processes", functools.partial(fit_in_processes, fit=fit_without_mcmc)
    )
    spec = WaveTruthSpec(
        markets=("DE",),
        brands=BRANDS,
        n_respondents=N_RESPONDENTS,
        rare_brand=None,
        association_options=OPTIONS,
    )
    simulate_wave(20261003, spec).write(str(tmp_path / "input" / "w1"))
    config = simulate_wave(20261003, spec).config(
        str(tmp_path / "input" / "{wave}"), str(tmp_path / "results")
    )
    assert "tracking" not in config
    path = tmp_path / "wave.yaml"
    path.write_text(yaml.safe_dump({**config, **PLUMBING, "workers": 1}, sort_keys=False))

    root = logging.getLogger()
    handlers = root.handlers[:]
    validated = invoke("validate", "--config", str(path), "--wave", "w1")
    root.handlers[:] = handlers  # not the closed stream of the first command's runner
    ran = invoke("run", "--config", str(path), "--wave", "w1")

    assert validated.code == 0, validated.err
    assert "wave w1 is valid" in validated.out
    assert ran.code == 0, ran.err
    assert ran.out.splitlines()[-1] == "wave w1: all 3 models converged"
    store = ResultStore(str(tmp_path / "results"))
    assert store.is_complete("w1")
    tracking = json.loads(store.read_bytes(f"w1/{TRACKING_FILE}"))
    assert tracking["status"] == "skipped"
    assert "'w1' is not a month" in tracking["message"]


def test_an_option_s3fs_does_not_take_exits_2_naming_it_before_any_store_is_touched(
    tmp_path: Path, s3_bucket: tuple[str, dict[str, object]]
) -> None:
    bucket, options = s3_bucket
    config = {
        "input": f"{bucket}/input",
        "output": f"{bucket}/results",
        "demographics": ["gender"],
        "storage_options": {**options, "bogus_opt": 1},
    }
    path = tmp_path / "wave.yaml"
    path.write_text(yaml.safe_dump(config))

    result = invoke("validate", "--config", str(path), "--wave", WAVE)

    assert result.code == ExitCode.INVALID, result.err
    assert "unknown option 'bogus_opt'" in result.err
    assert "s3fs accepts" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("flags", "words"),
    [({"q": 1.2}, "tracking.flags.q: "), ({"min_change": -0.01}, "tracking.flags.min_change: ")],
)
def test_a_bad_flag_rule_setting_exits_2_before_anything_is_written(
    wave_config: Path, tmp_path: Path, flags: dict[str, float], words: str
) -> None:
    """Issue 24: q outside (0, 1) or a negative min_change, named with its value and fix."""
    config = yaml.safe_load(wave_config.read_text())
    config["output"] = str(tmp_path / "results")
    config["tracking"] = {"flags": flags}
    path = tmp_path / "wave.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = invoke("run", "--config", str(path))
    assert result.code == 2
    assert words in result.err
    assert str(next(iter(flags.values()))) in result.err
    assert not (tmp_path / "results").exists()
