"""Helpers shared by the test modules: small simulated waves, a sampler that samples nothing,
planted crashes, free ports, the session's Prefect server. Imported as ``support`` (pytest puts
``tests/`` on the path).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np

from misterp.config import SamplerConfig
from misterp.mrp.cells import CellCounts, MarketCells
from misterp.mrp.config import PriorConfig
from misterp.mrp.model import BACKENDS, Backend
from misterp.mrp.simulate import SimulatedWave, WaveTruthSpec, simulate_wave
from misterp.mrp.specs import ModelSpec

WAVE = "2026-10"
ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))

#: Plumbing, not statistics: tiny draw counts and thresholds any short run passes.
PLUMBING: dict[str, Any] = {
    "sampler": {"draws": 60, "tune": 60, "chains": 2, "stored_draws": 40, "cores": 1},
    "convergence": {
        "r_hat_max": 2.0,
        "ess_bulk_min": 0,
        "ess_tail_min": 0,
        "parameter_ess_bulk_min": 0,
        "divergences_max": 10**6,
    },
    "retry": {"max_attempts": 1},
}


def values_at(model: Any, names: list[str]) -> Callable[[Mapping[str, Any]], list[np.ndarray]]:
    """The named variables of a PyMC model as a function of a point of its value variables.

    Each random variable in their graphs is replaced by its value first: compiling the model's
    variables as they are would draw a fresh sd (and offsets) from the prior at every call.
    """
    outputs = model.replace_rvs_by_values([model[name] for name in names])
    return model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_simulated_wave(seed: int = 3, **spec: Any) -> SimulatedWave:
    """Two markets, one brand, one association option, 300 respondents per market."""
    defaults: dict[str, Any] = {
        "markets": ("DE", "FR"),
        "brands": ("brand01",),
        "n_respondents": 300,
        "rare_brand": None,
        "association_options": ("innovative",),
    }
    return simulate_wave(seed, WaveTruthSpec(**(defaults | spec)))


def small_wave_config(
    tmp_path: Path,
    seed: int = 3,
    *,
    wave: str = WAVE,
    spec: Mapping[str, Any] | None = None,
    **config: Any,
) -> dict[str, Any]:
    """Write a small simulated wave under ``tmp_path/input`` and return its raw config."""
    simulated = small_simulated_wave(seed, **dict(spec or {}))
    simulated.write(str(tmp_path / "input"))
    raw = simulated.config(str(tmp_path / "input"), str(tmp_path / "results"))
    return raw | {"wave": wave} | config


def cell_posterior(p: np.ndarray, rng: np.random.Generator) -> Any:
    """An ArviZ posterior of P(yes | cell) ``p`` (chains, draws, cells), without divergences."""
    return az.from_dict(
        {
            "posterior": {"p": p, "Intercept": rng.normal(size=p.shape[:2])},
            "sample_stats": {
                "diverging": np.zeros(p.shape[:2], dtype=bool),
                "energy": rng.normal(size=p.shape[:2]),
            },
        }
    )


def conjugate_posterior(counts: CellCounts, sampler: SamplerConfig, seed: int) -> Any:
    """A posterior of P(yes | cell) drawn from independent Beta(1 + yes, 1 + no) per cell.

    No MCMC: it has the shape and the sample stats of a real fit (chains x draws, no
    divergences), sits where the data are, and takes milliseconds.
    """
    rng = np.random.default_rng(seed)
    shape = (sampler.chains, sampler.draws, len(counts.n))
    return cell_posterior(rng.beta(1 + counts.yes, 1 + counts.n - counts.yes, size=shape), rng)


#: A posterior from what a backend is given (no layout or priors needed by the fakes).
FakePosterior = Callable[[ModelSpec, CellCounts, SamplerConfig], Any]


def fake_backends(posterior: FakePosterior) -> dict[str, Backend]:
    """Backends (by name, as ``SamplerConfig.backend`` picks them) that call ``posterior``."""

    def sample(
        spec: ModelSpec,
        layout: MarketCells,
        counts: CellCounts,
        priors: PriorConfig,
        sampler: SamplerConfig,
    ) -> Any:
        return posterior(spec, counts, sampler)

    return dict.fromkeys(BACKENDS, sample)


def no_mcmc_backends(seed: int = 0) -> dict[str, Backend]:
    """Backends that sample nothing: the conjugate posterior of each model's cells."""
    return fake_backends(
        lambda spec, counts, sampler: conjugate_posterior(
            counts, sampler, seed + sampler.random_seed
        )
    )


def crashing_for(
    keys: Iterable[str],
    backends: Mapping[str, Backend] = BACKENDS,
    error: Callable[[], Exception] = lambda: MemoryError("planted: the sampler ran out of memory"),
) -> dict[str, Backend]:
    """``backends`` that raise ``error()`` for the models in ``keys`` (a planted crash)."""
    planted = set(keys)

    def wrap(backend: Backend) -> Backend:
        def sample(spec: ModelSpec, *args: Any) -> Any:
            if spec.key in planted:
                raise error()
            return backend(spec, *args)

        return sample

    return {name: wrap(backend) for name, backend in backends.items()}


@dataclass(frozen=True)
class PrefectServer:
    """A running server: its API URL, and the environment a CLI or worker needs to reach it."""

    api_url: str
    home: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **extra,
        }
        return env

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``prefect ARGS`` from the repository root against this server."""
        return subprocess.run(
            [PREFECT, "--no-prompt", *args],
            cwd=ROOT,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=300,
        )


def stop_group(process: subprocess.Popen[bytes], grace_seconds: float = 30) -> None:
    """SIGTERM the process and everything it started, SIGKILL what is left after ``grace_seconds``.

    A Prefect worker waits out its flow-run subprocesses on SIGTERM; a test that has already read
    its results passes a short grace so that wait does not add half a minute to the suite.
    """
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def config_file(path: Path, config: Mapping[str, Any]) -> str:
    """Write ``config`` as YAML to ``path`` and return the path: the flows take a config's path
    (never the config, a run parameter stored in Prefect's database)."""
    import yaml

    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return str(path)
