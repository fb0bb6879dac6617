"""How much a hand-written log density could save per leapfrog step (issue 23, item 4).

A fit's time is its leapfrog steps, and a step is mostly one call of the log density and its
gradient, which PyTensor compiles with numba from the model's graph (112 nodes for the default
formula at 150 cells). This bench times, both called from numba code as nutpie calls them
(no Python in the loop):

- ``compiled``: nutpie's compiled function of the default question model of a simulated German
  market (``p(yes, n) ~ 1 + gender + (1|age) + (1|education) + (1|region) + (1|age:gender)``,
  150 cells, 20 parameters);
- ``hand-written``: a numba function doing the same work by hand: the zero-sum extension of
  four group offsets, Gamma priors on their log sds, Normal priors, the binomial kernel over
  the 150 cells (one ``exp`` and one ``log1p`` a cell) and the gradient scattered back to the
  levels. It has the model's shape (parameters, cells, levels per group) but not its exact
  density (random cell levels, a simplified chain rule): a **floor** for what a hand-written
  kernel of this family could cost, not a kernel to sample with.

It prints both, in CPU microseconds a call (the best of three runs of ``--calls`` calls), and
the ratio. Run from the repository root: ``.venv/bin/python bench/kernel_floor.py`` (~1
minute, most of it compiling).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

from gradient_cost import model_with_profile
from misterp.fitting import reproducible_compilation

#: Levels of the default formula's groups: age, education, region, age x gender.
GROUP_LEVELS = (5, 3, 5, 5)


@intrinsic
def _double_pointer(typingctx: Any, address: Any) -> Any:
    """An integer address as ``double*``, for calling nutpie's C-signature function."""
    signature = types.CPointer(types.float64)(address)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.float64)))

    return signature, codegen


@intrinsic
def _void_pointer(typingctx: Any, address: Any) -> Any:
    """An integer address as ``void*`` (nutpie's user data)."""
    signature = types.voidptr(address)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], context.get_value_type(types.voidptr))

    return signature, codegen


@numba.njit
def _zero_sum(free: np.ndarray, full: np.ndarray) -> None:
    """PyMC's zero-sum extension: ``n - 1`` free values to ``n`` values that sum to zero."""
    size = free.shape[0] + 1.0
    total = free.sum()
    norm = total / (np.sqrt(size) + size)
    for i in range(free.shape[0]):
        full[i] = free[i] - norm
    full[free.shape[0]] = -total / np.sqrt(size)


@numba.njit
def _hand_written(
    x: np.ndarray, grad: np.ndarray, levels: np.ndarray, yes: np.ndarray, n: np.ndarray
) -> float:
    """The work of the default model's log density and gradient, by hand (see the module)."""
    grad[:] = 0.0
    logp = -0.5 * (x[0] / 2.5) ** 2 - 0.5 * (x[1] / 2.5) ** 2
    sds = np.exp(x[2:6])
    for k in range(4):  # Gamma(2, 4) on each sd, sampled on the log scale
        logp += np.log(sds[k]) - 4.0 * sds[k] + x[2 + k]
        grad[2 + k] += 2.0 - 4.0 * sds[k]
    effects = [np.empty(5), np.empty(3), np.empty(5), np.empty(5)]
    starts = (6, 10, 12, 16)
    for k in range(4):
        _zero_sum(x[starts[k] : starts[k] + effects[k].shape[0] - 1], effects[k])
        for value in effects[k]:
            logp -= 0.5 * value * value
    scores = [np.zeros(5), np.zeros(3), np.zeros(5), np.zeros(5)]
    intercept_score = 0.0
    gender_score = 0.0
    for cell in range(yes.shape[0]):
        eta = x[0] + x[1] * levels[4, cell]
        for k in range(4):
            eta += sds[k] * effects[k][levels[k, cell]]
        tail = np.exp(-abs(eta))
        p = 1.0 / (1.0 + tail) if eta >= 0 else tail / (1.0 + tail)
        logp += yes[cell] * eta - n[cell] * (max(eta, 0.0) + np.log1p(tail))
        score = yes[cell] - n[cell] * p
        intercept_score += score
        gender_score += score * levels[4, cell]
        for k in range(4):
            scores[k][levels[k, cell]] += score
    grad[0] += intercept_score - x[0] / 6.25
    grad[1] += gender_score - x[1] / 6.25
    for k in range(4):
        along = 0.0
        for i in range(effects[k].shape[0]):
            along += scores[k][i] * effects[k][i]
        grad[2 + k] += along * sds[k]
        for i in range(effects[k].shape[0] - 1):
            grad[starts[k] + i] += scores[k][i] * sds[k] - effects[k][i]
    return logp


@numba.njit
def _loop_hand_written(
    x: np.ndarray, grad: np.ndarray, levels: np.ndarray, yes: np.ndarray, n: np.ndarray, calls: int
) -> float:
    total = 0.0
    for _ in range(calls):
        x[0] += 1e-12  # a new point each call, as in a trajectory
        total += _hand_written(x, grad, levels, yes, n)
    return total


def compiled_loop(compiled: Any) -> Callable[[int], float]:
    """Calls of nutpie's compiled function from numba, as nutpie makes them."""
    function = compiled.compiled_logp_func
    n_dim = np.uint64(compiled.n_dim)
    user_data = compiled.user_data.ctypes.data
    x = np.full(compiled.n_dim, 0.1)
    grad = np.zeros(compiled.n_dim)
    logp = np.zeros(1)

    @numba.njit
    def loop(x: np.ndarray, grad: np.ndarray, logp: np.ndarray, calls: int) -> float:
        total = 0.0
        for _ in range(calls):
            x[0] += 1e-12
            function(
                n_dim,
                _double_pointer(x.ctypes.data),
                _double_pointer(grad.ctypes.data),
                _double_pointer(logp.ctypes.data),
                _void_pointer(user_data),
            )
            total += logp[0]
        return total

    loop(x, grad, logp, 10)
    return lambda calls: float(loop(x, grad, logp, calls))


def hand_written_loop(n_cells: int, n_dim: int) -> Callable[[int], float]:
    """Calls of the hand-written function on ``n_cells`` cells of random levels."""
    rng = np.random.default_rng(0)
    levels = np.vstack(
        [rng.integers(0, size, n_cells) for size in GROUP_LEVELS] + [rng.integers(0, 2, n_cells)]
    )
    yes = rng.integers(0, 20, n_cells).astype(np.float64)
    n = yes + rng.integers(0, 20, n_cells)
    x = np.full(n_dim, 0.1)
    grad = np.zeros(n_dim)
    _loop_hand_written(x, grad, levels, yes, n, 10)
    return lambda calls: float(_loop_hand_written(x, grad, levels, yes, n, calls))


def best_us(loop: Callable[[int], float], calls: int) -> float:
    """CPU microseconds a call, the best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        loop(calls)
        best = min(best, time.process_time() - started)
    return best / calls * 1e6


def main() -> None:
    import nutpie

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    options = parser.parse_args()
    reproducible_compilation()
    model, n_cells = model_with_profile(1, 3000)
    compiled = nutpie.compile_pymc_model(model)
    expected = 2 + len(GROUP_LEVELS) + sum(size - 1 for size in GROUP_LEVELS)
    if compiled.n_dim != expected:
        raise SystemExit(f"the default model has {compiled.n_dim} parameters, not {expected}")
    compiled_us = best_us(compiled_loop(compiled), options.calls)
    hand_us = best_us(hand_written_loop(n_cells, compiled.n_dim), options.calls)
    print(f"cells {n_cells}, parameters {compiled.n_dim}, {options.calls} calls each")
    print(f"compiled (PyTensor, numba)     {compiled_us:6.2f} us a call")
    print(f"hand-written floor (numba)     {hand_us:6.2f} us a call")
    print(f"ratio compiled / hand-written  {compiled_us / hand_us:6.2f}")


if __name__ == "__main__":
    main()
