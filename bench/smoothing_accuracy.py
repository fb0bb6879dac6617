"""The smoothed trend against the raw wave-on-wave flag, on simulated waves with known truth.

Each wave's posterior of an estimate is simulated directly, not fitted: a normal posterior
around the truth, mean ~ N(truth, sd), sd = sqrt(p (1 - p) / n) for a group of n respondents
(``small`` 100, ``medium`` 320, ``large`` 1,000, the sizes of ``bench/change_accuracy.py``).
That is the calibrated posterior the tracker aims at, and it keeps the whole run in seconds; a
real MRP posterior of a small group is narrower (partial pooling), so the numbers are about
what each rule does with the same posteriors, not about MRP.

Per seed, ``--estimates`` estimates per size over ``--waves`` monthly waves. In the mixed run a
share (``--changed``, default 5%) of the estimates steps by 3, 5 or 10 points (sign random,
towards 50%) at wave ``--step-wave`` and stays there (a persistent change); the rest never
move. Every wave from the ``--window``-th on is "published": the raw rule compares it with the
wave before (P(up) of the difference of two normal posteriors, flag at P >= 0.975, the
pipeline's two-sided 95% rule), the smoothed rule runs ``misterp.tracking.smoothing.local_level``
over the last ``--window`` waves with the drift sd learnt across all the estimates of that
publication, and flags the newest wave's smoothed change at the same 0.975.

What is printed
---------------
(a) false alarms: the share of (unchanged estimate, publication) pairs flagged, each rule, in
    the mixed run (5% changed: what the drift sd is learnt from) and in a run where nothing
    changes at all.
(b) power: the share of stepped estimates flagged in the right direction at the step's wave
    (lag 0), and within 1, 2 and 3 waves after it (any publication c..c+L), by change size and
    group size; for the smoothed rule also at a threshold matched, per group size, to the raw
    rule's false-alarm rate there (so both are compared at the same false-alarm rate).
(c) revised: the smoothed change *of the step's wave*, as the table published L waves later
    shows it (``smoothed.parquet`` keeps every wave of the window): flagged by lag L.
(d) lag: the mean number of waves after the step until each rule first flags it (among the
    steps flagged within 3 waves), and the learnt drift sds.

Run from the repository root: ``.venv/bin/python bench/smoothing_accuracy.py --seeds 5``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr  # type: ignore[import-untyped]

from misterp.tracking.smoothing import local_level

SIZES: dict[str, int] = {"small": 100, "medium": 320, "large": 1000}
MAGNITUDES: tuple[float, ...] = (0.03, 0.05, 0.10)
THRESHOLD = 0.975  # the pipeline's two-sided 95% flag
LAGS = (0, 1, 2, 3)


@dataclass
class Simulated:
    """One seed's truth and published posteriors, ``(estimates, waves)`` arrays."""

    truth: np.ndarray
    means: np.ndarray
    sds: np.ndarray
    size: np.ndarray  # group size name per estimate
    step: np.ndarray  # signed step (0: never moves)


def simulate(seed: int, estimates: int, waves: int, changed: float, step_wave: int) -> Simulated:
    """Truth and posteriors of ``estimates`` per group size; a share steps at ``step_wave``."""
    rng = np.random.default_rng(seed)
    sizes = np.repeat(list(SIZES), estimates)
    total = len(sizes)
    base = rng.uniform(0.1, 0.6, total)
    moved = rng.random(total) < changed
    magnitude = rng.choice(MAGNITUDES, total)
    sign = np.where(base < 0.5, 1.0, -1.0)
    step = np.where(moved, sign * magnitude, 0.0)
    truth = np.repeat(base[:, None], waves, axis=1)
    truth[:, step_wave:] += step[:, None]
    n = np.array([SIZES[s] for s in sizes], dtype=float)[:, None]
    sds = np.sqrt(truth * (1 - truth) / n)
    means = truth + rng.normal(0.0, 1.0, truth.shape) * sds
    return Simulated(truth, means, sds, sizes, step)


@dataclass
class Published:
    """Per publication (wave index): each rule's P(up) and P(down) of the newest change."""

    raw_up: dict[int, np.ndarray]
    raw_down: dict[int, np.ndarray]
    smooth_up: dict[int, np.ndarray]
    smooth_down: dict[int, np.ndarray]
    #: the smoothed change of the step wave as published at each later wave
    revised_up: dict[int, np.ndarray]
    revised_down: dict[int, np.ndarray]
    drift_sds: list[float]


def publish(sim: Simulated, window: int, step_wave: int) -> Published:
    """Run both rules at every wave from the ``window``-th on."""
    out = Published({}, {}, {}, {}, {}, {}, [])
    waves = sim.means.shape[1]
    for t in range(window - 1, waves):
        diff = sim.means[:, t] - sim.means[:, t - 1]
        sd = np.sqrt(sim.sds[:, t] ** 2 + sim.sds[:, t - 1] ** 2)
        out.raw_up[t], out.raw_down[t] = ndtr(diff / sd), ndtr(-diff / sd)
        lo = t - window + 1
        series = local_level(sim.means[:, lo : t + 1], sim.sds[:, lo : t + 1])
        out.drift_sds.append(series.drift_sd)
        up, down = series.p_up(), series.p_down()
        out.smooth_up[t], out.smooth_down[t] = up[:, -1], down[:, -1]
        if lo < step_wave <= t:
            out.revised_up[t], out.revised_down[t] = up[:, step_wave - lo], down[:, step_wave - lo]
    return out


def _right(up: np.ndarray, down: np.ndarray, step: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(step > 0, up >= threshold, down >= threshold)


def _any(up: np.ndarray, down: np.ndarray, threshold: float) -> np.ndarray:
    return (up >= threshold) | (down >= threshold)


def evaluate(
    seeds: int, estimates: int, waves: int, window: int, changed: float, step_wave: int
) -> dict[str, object]:
    """Every figure of the printed tables, pooled over seeds."""
    null_raw, null_smooth, mixed_raw, mixed_smooth = [], [], [], []
    steps: list[tuple[Simulated, Published]] = []
    drift_null, drift_mixed = [], []
    for seed in range(seeds):
        for share, pool in ((0.0, "null"), (changed, "mixed")):
            sim = simulate(seed, estimates, waves, share, step_wave)
            pub = publish(sim, window, step_wave)
            still = sim.step == 0
            for t in pub.raw_up:
                raw = _any(pub.raw_up[t], pub.raw_down[t], THRESHOLD)[still]
                smooth = _any(pub.smooth_up[t], pub.smooth_down[t], THRESHOLD)[still]
                (null_raw if pool == "null" else mixed_raw).append(raw.mean())
                (null_smooth if pool == "null" else mixed_smooth).append(smooth.mean())
            (drift_null if pool == "null" else drift_mixed).extend(pub.drift_sds)
            if pool == "mixed":
                steps.append((sim, pub))
    raw_alarm = float(np.mean(mixed_raw))
    # per group size: the smoothed threshold at which that size's unchanged estimates are
    # flagged as often as the raw rule flags them (one pooled threshold would move the false
    # alarms from small groups to large ones)
    matched: dict[str, float] = {}
    by_size: dict[str, tuple[float, float]] = {}
    for size in SIZES:
        raw_hits, scores = [], []
        for sim, pub in steps:
            unchanged = (sim.step == 0) & (sim.size == size)
            for t in pub.raw_up:
                raw_hits.append(_any(pub.raw_up[t], pub.raw_down[t], THRESHOLD)[unchanged])
                scores.append(np.maximum(pub.smooth_up[t], pub.smooth_down[t])[unchanged])
        rate = float(np.concatenate(raw_hits).mean())
        pooled = np.concatenate(scores)
        matched[size] = float(np.quantile(pooled, 1 - rate))
        by_size[size] = (rate, float((pooled >= matched[size]).mean()))
    power: dict[tuple[str, str, float, int], float] = {}
    lags: dict[str, list[int]] = {"raw": [], "smoothed": [], "matched": []}
    for size in SIZES:
        for magnitude in MAGNITUDES:
            hits: dict[str, list[np.ndarray]] = {}
            for sim, pub in steps:
                pick = (sim.size == size) & np.isclose(np.abs(sim.step), magnitude)
                step = sim.step[pick]
                rules = {
                    "raw": (pub.raw_up, pub.raw_down, THRESHOLD),
                    "smoothed": (pub.smooth_up, pub.smooth_down, THRESHOLD),
                    "matched": (pub.smooth_up, pub.smooth_down, matched[size]),
                    "revised": (pub.revised_up, pub.revised_down, THRESHOLD),
                }
                for name, (ups, downs, threshold) in rules.items():
                    flagged = np.stack(
                        [
                            _right(
                                ups[step_wave + lag][pick],
                                downs[step_wave + lag][pick],
                                step,
                                threshold,
                            )
                            for lag in LAGS
                        ]
                    )
                    hits.setdefault(name, []).append(flagged)
            for name, parts in hits.items():
                flagged = np.concatenate(parts, axis=1)  # (lags, steps)
                for lag in LAGS:
                    at = flagged[lag] if name == "revised" else flagged[: lag + 1].any(axis=0)
                    power[(name, size, magnitude, lag)] = float(at.mean())
                if name in lags:
                    ever = flagged.any(axis=0)
                    lags[name] += list(np.argmax(flagged, axis=0)[ever])
    return {
        "false_alarms": {
            "null": (float(np.mean(null_raw)), float(np.mean(null_smooth))),
            "mixed": (raw_alarm, float(np.mean(mixed_smooth))),
        },
        "matched_threshold": matched,
        "false_alarms_by_size": by_size,
        "power": power,
        "lag": {
            k: (float(np.mean(v)), len(v)) if v else (float("nan"), 0) for k, v in lags.items()
        },
        "drift_sd": (float(np.median(drift_null)), float(np.median(drift_mixed))),
        "steps": sum(int((sim.step != 0).sum()) for sim, _ in steps),
    }


def main(argv: list[str] | None = None) -> int:
    """Simulate, run both rules, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--estimates", type=int, default=2000, help="per group size")
    parser.add_argument("--waves", type=int, default=12)
    parser.add_argument("--window", type=int, default=6)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--step-wave", type=int, default=8, help="0-based wave of the steps")
    args = parser.parse_args(argv)
    if not args.window <= args.step_wave <= args.waves - len(LAGS):
        parser.error("need window <= step-wave <= waves - 4 (the lags are followed 3 waves)")
    started = time.perf_counter()
    result = evaluate(
        args.seeds, args.estimates, args.waves, args.window, args.changed, args.step_wave
    )
    fa = result["false_alarms"]
    assert isinstance(fa, dict)
    print(
        f"{args.seeds} seeds x {3 * args.estimates} estimates x {args.waves} waves, window "
        f"{args.window}, {args.changed:.0%} stepping at wave {args.step_wave} "
        f"({result['steps']} steps); {time.perf_counter() - started:.1f} s"
    )
    print("\n(a) false alarms per unchanged estimate and publication (flag at 0.975)")
    print(f"{'run':<28}{'raw':>8}{'smoothed':>10}")
    for name, (raw, smooth) in fa.items():
        label = "nothing changes" if name == "null" else f"{args.changed:.0%} changed"
        print(f"{label:<28}{raw:8.2%}{smooth:10.2%}")
    thresholds = result["matched_threshold"]
    assert isinstance(thresholds, dict)
    by_size = result["false_alarms_by_size"]
    assert isinstance(by_size, dict)
    print(f"{'by size (5% changed)':<28}{'raw':>8}{'matched':>10}  matched threshold")
    for size, (raw, smooth) in by_size.items():
        print(f"{size:<28}{raw:8.2%}{smooth:10.2%}  P >= {thresholds[size]:.4f}")
    power = result["power"]
    assert isinstance(power, dict)
    print("\n(b) power: stepped estimates flagged the right way by lag L (any wave c..c+L)")
    header = "".join(f"{f'L={lag}':>8}" for lag in LAGS)
    for name in ("raw", "smoothed", "matched", "revised"):
        title = {
            "raw": "raw wave-on-wave, 0.975",
            "smoothed": "smoothed newest change, 0.975",
            "matched": "smoothed newest change, at each size's raw false-alarm rate",
            "revised": "(c) smoothed change of the step wave, as published L waves later",
        }[name]
        print(f"\n{title}\n{'size':<8}{'change':>8}{header}")
        for size in SIZES:
            for magnitude in MAGNITUDES:
                cells = "".join(f"{power[(name, size, magnitude, lag)]:8.1%}" for lag in LAGS)
                print(f"{size:<8}{magnitude * 100:7.0f}p{cells}")
    lag = result["lag"]
    drift = result["drift_sd"]
    assert isinstance(lag, dict)
    assert isinstance(drift, tuple)
    print(
        "\n(d) mean lag (waves after the step until first flagged, among those flagged within "
        "3 waves): " + ", ".join(f"{k} {v:.2f} ({n} steps)" for k, (v, n) in lag.items())
    )
    print(f"learnt drift sd (median): nothing changes {drift[0]:.4f}, mixed {drift[1]:.4f}")
    raw_alarm, smooth_alarm = fa["mixed"]
    print(
        f"seeds={args.seeds} false_alarm_raw={raw_alarm:.4f} "
        f"false_alarm_smoothed={smooth_alarm:.4f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
