"""CPU seconds a fit costs under two sampling settings, paired model by model on one core.

Issue 23's before/after on equal terms: each model is fitted once per setting, the settings
taking turns model by model in one process pinned to a core, so a neighbour's load drifts over
both alike (whole-wave benches on a shared machine moved 2x between runs). A setting is
``CHECK_EVERY:TUNE:POLICY`` (``fixed`` for no looks), e.g. ``fixed:500:all_parameters`` is
misterp before issue 23 and ``250:200:estimands`` its defaults after; an optional fourth
field is the draws cap (``125:200:estimands:1500``). Prints per setting the CPU seconds per
fit (retries included) and how much of it the main thread spent (looks: reading the trace,
R-hat and ESS; the rest is nutpie's sampling threads), the ratio to the first setting, the
draws per chain the first attempt was judged on, and the share of fits converged at once,
retried, converged.

Run: ``taskset -c 0 .venv/bin/python bench/fit_cost_paired.py --models 48 \\
fixed:500:all_parameters 250:200:estimands`` (~5 minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from misterp.config import ConvergencePolicy, SamplerConfig
from misterp.mrp.config import parse_config
from misterp.mrp.prepare import PreparedWave, prepare_wave
from misterp.mrp.simulate import WaveTruthSpec, simulate_wave
from misterp.mrp.wave import fit_prepared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "settings", nargs="+", help="CHECK_EVERY:TUNE:POLICY[:CAP], first = baseline"
    )
    parser.add_argument("--models", type=int, default=48, help="spread over the wave's kinds")
    parser.add_argument("--seed", type=int, default=2026)
    options = parser.parse_args()
    spec = WaveTruthSpec(markets=("DE", "FR"), brands=tuple(f"brand{i:02d}" for i in range(1, 9)))
    simulated = simulate_wave(options.seed, spec)
    with tempfile.TemporaryDirectory() as tmp:
        simulated.write(tmp)
        raw = simulated.config(tmp, f"{tmp}/out") | {"wave": "2026-10"}
        waves: dict[str, tuple[PreparedWave, SamplerConfig]] = {}
        for setting in options.settings:
            check, tune, policy, *cap = setting.split(":")
            config = parse_config(raw | {"convergence": {"policy": ConvergencePolicy(policy)}})
            sampler = SamplerConfig(
                cores=1,
                tune=int(tune),
                check_every=None if check == "fixed" else int(check),
                **({"draws": int(cap[0])} if cap else {}),
            )
            waves[setting] = (prepare_wave(config), sampler)
        first = next(iter(waves.values()))[0]
        questions = [s for s in first.specs if s.profile is None]
        models = questions[:: max(1, len(questions) // options.models)][: options.models]
        for prepared, _ in waves.values():  # compile each market's model, untimed
            for market in {m.market for m in models}:
                spec_of_market = next(m for m in models if m.market == market)
                fit_prepared(prepared, spec_of_market, SamplerConfig(draws=10, tune=10, cores=1))
        totals = {setting: [0.0, 0, 0, 0, 0, 0.0] for setting in waves}
        for model in models:
            for setting, (prepared, sampler) in waves.items():
                started, main_started = time.process_time(), time.thread_time()
                result = fit_prepared(prepared, model, sampler)
                total = totals[setting]
                total[0] += time.process_time() - started
                total[5] += time.thread_time() - main_started
                report = result.attempts[0].report
                total[1] += report.draws if report else 0
                total[2] += result.attempts[0].status.value == "converged"
                total[3] += len(result.attempts) > 1
                total[4] += result.status.value == "converged"
    baseline = totals[options.settings[0]][0]
    count = len(models)
    print(f"{count} models, CPU seconds per fit on one core, retries included")
    for setting, (cpu, draws, at_once, retried, converged, main) in totals.items():
        print(
            f"{setting:26} {cpu / count:5.2f} s  x {cpu / baseline:4.2f}"
            f"  (main thread {main / count:4.2f}, nutpie's threads {(cpu - main) / count:4.2f})"
            f"  draws {draws / count:4.0f}  converged at once {at_once}/{count}"
            f"  retried {retried}  converged {converged}"
        )


if __name__ == "__main__":
    main()
