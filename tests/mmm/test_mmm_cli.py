"""``misterp mmm``: exit codes and messages without any fitting."""

from __future__ import annotations

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

    from flows.mmm_cli import _report

    outcome = fake_run(tmp_path, diverging=())
    assert _report(outcome) == ExitCode.OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == f"report: {tmp_path / 'out' / 'mmm' / 'r1' / 'report' / 'index.html'}"
    assert lines[-1] == "media-mix run r1: all 2 models converged"
