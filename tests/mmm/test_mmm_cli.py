"""``misterp mmm``: exit codes and messages without any fitting."""

from __future__ import annotations

import json

import pandas as pd

from flows.cli import ExitCode, main
from misterp.mmm.simulate import simulate_mmm


def test_mmm_run_with_invalid_input_exits_2_naming_the_problem(tmp_path, capsys) -> None:
    sim = simulate_mmm(3, markets=("DE",), n_channels=2, n_weeks=80)
    sim.media.loc[5, "spend"] = -1.0
    sim.write(tmp_path / "input")
    config = tmp_path / "mmm.yaml"
    config.write_text(f"input: {tmp_path / 'input'}\noutput: {tmp_path / 'out'}\n")
    assert main(["mmm", "run", "--config", str(config)]) == ExitCode.INVALID
    err = capsys.readouterr().err
    assert "media.csv, column 'spend', row 7: spend must be a number >= 0" in err
    assert not (tmp_path / "out").exists()


def test_mmm_run_with_a_typo_in_the_config_exits_2_with_a_suggestion(tmp_path, capsys) -> None:
    config = tmp_path / "mmm.yaml"
    config.write_text("input: in\noutput: out\nholdout_week: 4\n")
    assert main(["mmm", "run", "--config", str(config)]) == ExitCode.INVALID
    assert "did you mean 'holdout_weeks'" in capsys.readouterr().err


def test_mmm_run_without_the_config_file_exits_2(tmp_path, capsys) -> None:
    assert main(["mmm", "run", "--config", str(tmp_path / "none.yaml")]) == ExitCode.INVALID
    assert "config file not found" in capsys.readouterr().err


def test_mmm_report_lines_name_the_report_page_before_the_headline(tmp_path, capsys) -> None:
    from tests.reporting.mmm_run_store import fake_run

    from flows.mmm_cli import report_lines
    from flows.mmm_flow import run_summary

    outcome = fake_run(tmp_path, diverging=())
    assert report_lines(run_summary(outcome)) == ExitCode.OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"report: {tmp_path / 'out' / 'mmm' / 'r1' / 'report' / 'index.html'}"
    assert lines[-1] == "media-mix run r1: all 2 models converged"


def test_mmm_report_rewrites_the_report_of_a_published_run(tmp_path, capsys) -> None:
    from tests.reporting.mmm_run_store import fake_run

    fake_run(tmp_path)
    out = tmp_path / "out"
    report = out / "mmm" / "r1" / "report"
    (report / "index.html").write_text("stale")
    (report / "roas.csv").unlink()
    capsys.readouterr()

    assert main(["mmm", "report", "--output", str(out), "--run", "r1"]) == ExitCode.OK
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(report / "index.html")
    assert "Media-mix report: run r1" in (report / "index.html").read_text()
    assert set(pd.read_csv(report / "roas.csv")["Market"]) == {"DE", "FR"}
    record = json.loads((out / "mmm" / "r1" / "report.json").read_text())
    assert record["status"] == "written"
    assert record["run"] == "r1"


def test_mmm_report_of_an_unknown_run_exits_2_naming_the_published_runs(tmp_path, capsys) -> None:
    from tests.reporting.mmm_run_store import fake_run

    fake_run(tmp_path)
    out = tmp_path / "out"
    capsys.readouterr()

    assert main(["mmm", "report", "--output", str(out), "--run", "r2"]) == ExitCode.INVALID
    err = capsys.readouterr().err.strip()
    assert err == (
        f"no media-mix run 'r2' in {out / 'mmm'} (published runs there: r1): give the id of a "
        "published run with --run, or check --output"
    )
    assert not (out / "mmm" / "r2").exists()


def test_mmm_report_of_an_unpublished_run_exits_2_with_the_fix(tmp_path, capsys) -> None:
    from tests.reporting.mmm_run_store import fake_run

    fake_run(tmp_path)
    run = tmp_path / "out" / "mmm" / "r1"
    (run / "manifest.json").unlink()
    before = (run / "report.json").read_text()
    capsys.readouterr()

    assert main(["mmm", "report", "--output", str(tmp_path / "out"), "--run", "r1"]) == 2
    err = capsys.readouterr().err
    assert f"media-mix run r1 in {run} is not published (no manifest.json" in err
    assert "finish it with `misterp mmm run --config CONFIG`" in err
    assert (run / "report.json").read_text() == before


def test_mmm_report_refuses_a_run_id_that_is_not_a_safe_id(tmp_path, capsys) -> None:
    code = main(["mmm", "report", "--output", str(tmp_path), "--run", "../waves"])
    assert code == ExitCode.INVALID
    err = capsys.readouterr().err
    assert err.startswith("run id '../waves'")
    assert "OUTPUT/mmm/RUN/" in err
    assert list(tmp_path.iterdir()) == []


def test_mmm_report_that_fails_exits_3_in_one_line_with_the_rerun(tmp_path, capsys) -> None:
    from tests.reporting.mmm_run_store import fake_run

    fake_run(tmp_path)
    out = tmp_path / "out"
    roas = out / "mmm" / "r1" / "roas.parquet"
    roas.write_bytes(roas.read_bytes() + b"another run")
    capsys.readouterr()

    assert main(["mmm", "report", "--output", str(out), "--run", "r1"]) == ExitCode.CRASHED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"misterp mmm report crashed: RecordError: {roas} does not belong")
    assert lines[0].endswith(f"; re-run with: misterp mmm report --output {out} --run r1")
    assert json.loads((roas.parent / "report.json").read_text())["status"] == "failed"
