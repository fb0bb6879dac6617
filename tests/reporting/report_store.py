"""A small store of three published monthly waves for the report tests (no MCMC).

One population over three waves (``simulate_waves``), a true +15 point move of brand01's
awareness in the last one, each wave run like a real one (``run_wave_inline`` with a sampler
that samples nothing), so estimates, changes, trends, funnel, competitors and the report are
what a real run leaves. Also used by ``screenshot.py`` for the README's picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from misterp.mrp.config import parse_config
from misterp.mrp.simulate import TrueChange, WaveTruthSpec, simulate_waves
from misterp.mrp.wave import WaveOutcome
from misterp.pipeline.wave import run_wave_inline
from support import PLUMBING, no_mcmc_backends

WAVES: tuple[str, ...] = ("2026-09", "2026-10", "2026-11")


def build_three_waves(
    root: Path,
    *,
    markets: Sequence[str] = ("DE",),
    brands: Sequence[str] = ("brand01", "brand02"),
    options: Sequence[str] = ("innovative", "trustworthy"),
    respondents: int = 400,
) -> list[WaveOutcome]:
    """Simulate and publish ``WAVES`` under ``root/results`` (input under ``root/input``)."""
    spec = WaveTruthSpec(
        markets=tuple(markets),
        brands=tuple(brands),
        n_respondents=respondents,
        rare_brand=None,
        association_options=tuple(options),
    )
    moved = TrueChange("aware_brand01", "yes", "all", 0.15, WAVES[-1])
    series = simulate_waves(5, spec, WAVES, [moved])
    outcomes = []
    for wave, simulated in series.waves.items():
        simulated.write(str(root / "input" / wave))
        raw = simulated.config(str(root / "input" / wave), str(root / "results"))
        raw |= {"wave": wave, "tracking": {"period": "month"}, **PLUMBING}
        outcomes.append(run_wave_inline(parse_config(raw), backends=no_mcmc_backends()))
    return outcomes
