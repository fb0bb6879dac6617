"""Profile models pooled over the last K waves (``profile_settings.pool_waves``).

Profile shares move slowly, so the respondents of earlier waves may join this wave's in the
profile models, P(level | census cell), and nowhere else. Checked exactly on counts: a pooled
profile model sees this wave's respondents plus the earlier waves' in each census cell, and
every question model sees this wave's answers alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from misterp.config import ConfigError
from misterp.mrp.config import parse_config
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.staging import load_staged_wave, stage_wave
from misterp.mrp.validation import InputValidationError
from misterp.pipeline.wave import run_wave_inline
from misterp.storage import ResultStore
from support import PLUMBING, WAVE, no_mcmc_backends

#: wave -> (gender, user) -> respondents; every wave has the same census.
PANELS: dict[str, dict[tuple[str, str], int]] = {
    "2026-08": {("f", "yes"): 30, ("f", "no"): 10, ("m", "yes"): 5, ("m", "no"): 25},
    "2026-09": {("f", "yes"): 20, ("f", "no"): 20, ("m", "yes"): 10, ("m", "no"): 30},
    WAVE: {("f", "yes"): 12, ("f", "no"): 8, ("m", "yes"): 4, ("m", "no"): 16},
}


def _write(folder: Path, panel: dict[tuple[str, str], int], wave: str) -> None:
    """A wave folder: respondents with a profile ``user``, one awareness answer each."""
    people = [
        (f"{wave}-{gender}-{user}-{i}", "DE", gender, user)
        for (gender, user), count in panel.items()
        for i in range(count)
    ]
    folder.mkdir(parents=True)
    frame = pd.DataFrame(people, columns=["respondent_id", "market", "gender", "user"])
    frame.to_csv(folder / "respondents.csv", index=False)
    answers = frame[["respondent_id"]].assign(
        question_id="aware_b1", option="yes", selected=np.arange(len(frame)) % 2
    )
    answers.to_csv(folder / "answers.csv", index=False)
    census = pd.DataFrame({"market": "DE", "gender": ["f", "m"], "population": [100.0, 300.0]})
    census.to_csv(folder / "poststrat.csv", index=False)


def _inputs(tmp_path: Path, waves: tuple[str, ...] = tuple(PANELS)) -> str:
    for wave in waves:
        _write(tmp_path / "input" / wave, PANELS[wave], wave)
    return str(tmp_path / "input" / "{wave}")


def _config(tmp_path: Path, input_uri: str, pool: int, **extra: Any) -> dict[str, Any]:
    return {
        "input": input_uri,
        "output": str(tmp_path / "results"),
        "demographics": ["gender"],
        "profiles": ["user"],
        "profile_settings": {"pool_waves": pool},
        "target_groups": {"users": {"user": ["yes"]}},
        **PLUMBING,
    } | extra


def _prepare(tmp_path: Path, input_uri: str, pool: int) -> PreparedWave:
    return prepare_wave(parse_config(_config(tmp_path, input_uri, pool)).resolved(wave=WAVE))


def _profile_counts(prepared: PreparedWave) -> tuple[list[int], list[int]]:
    counts = prepared.counts["DE/profile.user/yes"]
    return counts.yes.tolist(), counts.n.tolist()


def _expected(waves: list[str]) -> tuple[list[int], list[int]]:
    """Users and respondents per census cell (f, m) over ``waves``."""
    yes = [sum(PANELS[w][(g, "yes")] for w in waves) for g in ("f", "m")]
    n = [sum(PANELS[w][(g, u)] for w in waves for u in ("yes", "no")) for g in ("f", "m")]
    return yes, n


def test_a_pooled_profile_model_counts_every_pooled_waves_respondents_and_nothing_else(
    tmp_path: Path,
) -> None:
    input_uri = _inputs(tmp_path)
    alone = _prepare(tmp_path, input_uri, pool=1)
    pooled = _prepare(tmp_path, input_uri, pool=3)

    assert _profile_counts(alone) == _expected([WAVE])
    assert _profile_counts(pooled) == _expected(["2026-08", "2026-09", WAVE])
    assert _profile_counts(pooled) != _profile_counts(alone)
    # the question model sees this wave's answers alone, pooled or not
    question = "DE/aware_b1/yes"
    assert pooled.counts[question].n.tolist() == alone.counts[question].n.tolist()
    assert pooled.counts[question].n.sum() == sum(PANELS[WAVE].values())
    assert pooled.profile_pooling["DE"] == (
        "profile models pooled with waves 2026-08, 2026-09 (150 earlier respondents)"
    )
    assert alone.profile_pooling == {}


def test_a_window_reaching_before_the_first_wave_pools_the_waves_there_and_says_which_not(
    tmp_path: Path,
) -> None:
    input_uri = _inputs(tmp_path, ("2026-09", WAVE))
    pooled = _prepare(tmp_path, input_uri, pool=4)

    assert _profile_counts(pooled) == _expected(["2026-09", WAVE])
    assert pooled.profile_pooling["DE"] == (
        "profile models pooled with waves 2026-09 (80 earlier respondents); "
        "no respondents of 2026-07, 2026-08 in this market's inputs"
    )


def test_the_pooling_note_survives_staging_and_reaches_the_audience_size(tmp_path: Path) -> None:
    input_uri = _inputs(tmp_path)
    pooled = _prepare(tmp_path, input_uri, pool=3)
    store = ResultStore(str(tmp_path / "staged"))
    stage_wave(pooled, store)
    read_back = load_staged_wave(store, WAVE)
    assert read_back.profile_pooling == pooled.profile_pooling
    assert _profile_counts(read_back) == _profile_counts(pooled)

    config = parse_config(_config(tmp_path, input_uri, pool=3)).resolved(wave=WAVE)
    run_wave_inline(config, backends=no_mcmc_backends())
    sizes = pd.read_parquet(tmp_path / "results" / WAVE / "audiences.parquet")
    users = sizes.set_index("target_group").loc["users"]
    assert "pooled with waves 2026-08, 2026-09" in users["note"]


def test_pooling_needs_an_input_that_names_the_wave(tmp_path: Path) -> None:
    _inputs(tmp_path, (WAVE,))
    with pytest.raises(ConfigError, match=r"write it with \{wave\}"):
        _prepare(tmp_path, str(tmp_path / "input" / WAVE), pool=2)


def test_pooling_needs_wave_ids_that_are_periods(tmp_path: Path) -> None:
    _write(tmp_path / "input" / "spring", PANELS[WAVE], "spring")
    config = _config(tmp_path, str(tmp_path / "input" / "{wave}"), pool=2)
    with pytest.raises(ConfigError, match="wave ids that are periods"):
        prepare_wave(parse_config(config).resolved(wave="spring"))


def test_a_bad_earlier_wave_is_named_by_its_folder_with_the_way_out(tmp_path: Path) -> None:
    input_uri = _inputs(tmp_path)
    earlier = tmp_path / "input" / "2026-09" / "respondents.csv"
    pd.read_csv(earlier).drop(columns="user").to_csv(earlier, index=False)

    with pytest.raises(InputValidationError) as raised:
        _prepare(tmp_path, input_uri, pool=3)
    message = str(raised.value)
    assert f"{tmp_path / 'input' / '2026-09'}/respondents.csv" in message
    assert "user" in message
    assert "lower profile_settings.pool_waves" in message


@pytest.mark.parametrize("pool", [0, 14])
def test_a_pool_outside_1_to_13_waves_is_a_config_error(tmp_path: Path, pool: int) -> None:
    with pytest.raises(ConfigError, match="pool_waves"):
        parse_config(_config(tmp_path, str(tmp_path / "{wave}"), pool))


def test_a_wave_read_from_elsewhere_pools_the_earlier_waves_named_for_it(tmp_path: Path) -> None:
    """As an import validates its wave in a temporary folder before it lands beside the others."""
    input_uri = _inputs(tmp_path, ("2026-08", "2026-09"))
    _write(tmp_path / "elsewhere", PANELS[WAVE], WAVE)
    config = parse_config(_config(tmp_path, input_uri, pool=3))
    moved = config.resolved(wave=WAVE, input=str(tmp_path / "elsewhere"))

    with pytest.raises(ConfigError, match="does not name the wave"):
        prepare_wave(moved)
    prepared = prepare_wave(moved.with_earlier_inputs(input_uri))
    assert _profile_counts(prepared) == _expected(["2026-08", "2026-09", WAVE])
