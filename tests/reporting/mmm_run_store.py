"""A published media-mix run made without MCMC (the run tests' fake sampler), for report tests."""

from __future__ import annotations

from pathlib import Path

from tests.mmm.test_mmm_budget import budget_functions
from tests.mmm.test_mmm_run import DIVERGING

from misterp.mmm.config import BudgetConfig, MMMConfig
from misterp.mmm.run import MMMRunOutcome
from misterp.mmm.simulate import simulate_mmm
from misterp.pipeline.mmm import run_mmm
from misterp.storage import ResultStore

RUN = "r1"


def fake_run(
    root: Path, *, budget: bool = True, diverging: tuple[str, ...] = ("FR",), store=None
) -> MMMRunOutcome:
    """Two markets x two channels x 80 weeks; ``diverging`` markets end not converged."""
    simulate_mmm(5, markets=("DE", "FR"), n_channels=2, n_weeks=80).write(root / "input")
    config = MMMConfig(
        input=str(root / "input"),
        output=str(root / "out"),
        controls=["price"],
        run=RUN,
        budget=BudgetConfig(weeks=4) if budget else None,
    )
    DIVERGING.clear()
    DIVERGING.update(diverging)
    try:
        return run_mmm(
            config, store or ResultStore(config.output), workers=1, functions=budget_functions
        )
    finally:
        DIVERGING.clear()
