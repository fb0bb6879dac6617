"""Did it really change? False alarms and interval calibration of changes, against known truth.

Simulated monthly waves of one population (``simulate_waves``) are run through the real
pipeline (``run_wave_inline``: nutpie, default sampler and flag settings), which writes each
wave's ``changes.parquet`` against the previous complete wave. Its comparable rows are joined
with the exact true changes (``flows.demo.score_changes``). Two seeds x 6 waves x 6 models x 3
target groups give 180 comparisons, most of them of estimates whose truth did not move.

The bounds are the issue's targets, not figures seen in a run: false alarms <= 5% and 90%
change intervals covering the truth 85-95% of the time. With ~150 unchanged estimates, a rate
has a sampling error of about +-3.5 points, so the test asks that the data are consistent with
the target (the target lies inside, or beyond the right end of, the 95% Wilson interval of the
observed rate) rather than that one run lands inside it: a rule that flags ~10% (the old
one-sided P(up) >= 0.95) is rejected at these counts, a calibrated 5% rule is not.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from flows.demo import score_changes
from misterp.mrp.config import parse_config
from misterp.mrp.simulate import TrueChange, WaveTruthSpec, simulate_waves
from misterp.pipeline.wave import run_wave_inline
from misterp.tracking.changes import CHANGES_FILE

WAVES = ("2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06")
SEEDS = (11, 12)
TARGET_GROUPS = {
    "men_45_plus": {"gender": ["male"], "age": ["45-54", "55+"]},
    "women_18_34": {"gender": ["female"], "age": ["18-24", "25-34"]},
}
#: A few real moves, so that calibration is also checked where the truth changed.
CHANGES = (
    TrueChange("aware_brand01", "yes", "women_18_34", 0.08, "2026-03"),
    TrueChange("consider_brand02", "yes", "all", -0.06, "2026-04"),
    TrueChange("aware_brand02", "yes", "all", 0.05, "2026-05"),
    TrueChange("assoc_brand01", "trustworthy", "men_45_plus", 0.10, "2026-06"),
)


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a binomial rate.

    >>> [round(x, 4) for x in wilson(5, 100)]
    [0.0215, 0.1118]
    """
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _scored_series(seed: int, root: Path) -> pd.DataFrame:
    spec = WaveTruthSpec(
        markets=("DE",),
        brands=("brand01", "brand02"),
        association_options=("trustworthy",),
        rare_brand=None,
        n_respondents=1000,
        target_groups=TARGET_GROUPS,
    )
    series = simulate_waves(seed, spec, WAVES, CHANGES)
    output = root / f"seed{seed}" / "out"
    for label, wave in series.waves.items():
        input_dir = root / f"seed{seed}" / "input" / label
        wave.write(str(input_dir))
        config = wave.config(str(input_dir), str(output)) | {"wave": label, "sampler": {"cores": 2}}
        outcome = run_wave_inline(parse_config(config))
        assert outcome.counts.converged == outcome.counts.models, outcome.counts.sentence()
    changes = pd.concat([pd.read_parquet(output / w / CHANGES_FILE) for w in WAVES[1:]])
    return score_changes(changes, series.true_changes)


@pytest.mark.slow
def test_changes_raise_few_false_alarms_and_their_intervals_are_calibrated(
    tmp_path: Path,
) -> None:
    scored = pd.concat([_scored_series(seed, tmp_path) for seed in SEEDS], ignore_index=True)
    # every consecutive pair, model and group is compared like for like
    assert len(scored) == len(SEEDS) * (len(WAVES) - 1) * 6 * 3

    unchanged = scored[scored["kind"] == "unchanged"]
    false_alarms = int(unchanged["flag"].isin(["up", "down"]).sum())
    low, _high = wilson(false_alarms, len(unchanged))
    rate = false_alarms / len(unchanged)
    print(f"\nfalse alarms {false_alarms}/{len(unchanged)} = {rate:.1%} (Wilson low {low:.1%})")
    assert len(unchanged) >= 120
    assert low <= 0.05, f"false alarms {false_alarms}/{len(unchanged)} = {rate:.1%}: above 5%"

    covered = int(scored["covered"].sum())
    low, high = wilson(covered, len(scored))
    coverage = covered / len(scored)
    print(f"coverage of the 90% change intervals {covered}/{len(scored)} = {coverage:.1%}")
    said = f"90% change intervals cover the truth in {covered}/{len(scored)} = {coverage:.1%}"
    assert low <= 0.95, f"{said}: above 95%, too wide"
    assert high >= 0.85, f"{said}: below 85%, too narrow"
