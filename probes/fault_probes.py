"""Fault probes, by hand: kill, outage, two runs, hostile ids and credentials, for both families.

The README promises how each fault ends (a recorded, explained state that a re-run completes,
never a traceback); the suite tests each promise with fakes, and this script checks them the
way a user meets them: the real ``misterp`` command with real sampling (tiny settings), real
processes killed with SIGKILL, and a real S3 endpoint (moto) stopped under a run. It prints one
line per probe (expected vs observed) and exits 1 when any probe breaks its promise.

Usage (about 10-15 minutes on 2 cores)::

    .venv/bin/python probes/fault_probes.py                # both families
    .venv/bin/python probes/fault_probes.py --family mmm --keep /tmp/probes

Each probe runs in its own folder under a temporary root (``--keep DIR`` keeps it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
MISTERP = [str(Path(sys.executable).with_name("misterp"))]
WAVE = "2026-10"
RUN = "probe"
TINY_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "cores": 1, "stored_draws": 200}
#: Loose enough that tiny fits converge: a re-run then reuses them, and its estimates must be
#: the clean run's to the last digit (a not converged fit would be refitted further up the
#: retry ladder, with other draws, by design).
LOOSE_CONVERGENCE = {"r_hat_max": 1.05, "ess_bulk_min": 100, "ess_tail_min": 100}
#: A secret-looking value planted in the config; it may appear in no output, log or database.
SECRET = "planted-probe-secret-7f3a9c"


@dataclasses.dataclass
class Outcome:
    """One probe: what the README promises and what happened."""

    family: str
    probe: str
    expected: str
    observed: str
    ok: bool

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        return (
            f"{mark} {self.family:4} {self.probe:28} expected: {self.expected}; "
            f"got: {self.observed}"
        )


# -- running the command ----------------------------------------------------------------------


@dataclasses.dataclass
class Running:
    """A ``misterp`` process whose stderr is collected line by line as it runs."""

    process: subprocess.Popen[str]
    lines: list[str]
    reader: threading.Thread

    def wait(self, timeout: float = 900) -> int:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 600) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if self.process.poll() is not None:
                return predicate()
            time.sleep(0.2)
        return False


def start(args: list[str], env: dict[str, str]) -> Running:
    process = subprocess.Popen(
        [*MISTERP, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return Running(process, lines, reader)


def run(args: list[str], env: dict[str, str], timeout: float = 900) -> tuple[int, str]:
    running = start(args, env)
    code = running.wait(timeout)
    return code, running.text


def last_line(text: str, limit: int = 160) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def descendants(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


def fit_workers(pid: int) -> list[psutil.Process]:
    """Child processes that fit (spawned Python workers, not the temporary Prefect server)."""
    workers = []
    for child in descendants(pid):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "multiprocessing" in command and "resource_tracker" not in command:
                workers.append(child)
    return workers


def _cpu_seconds(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


def survivors(processes: list[psutil.Process], seconds: float = 15) -> list[int]:
    """Pids of ``processes`` still alive after ``seconds`` (zombies count as gone)."""
    deadline = time.monotonic() + seconds
    alive = processes
    while time.monotonic() < deadline:
        alive = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        if not alive:
            return []
        time.sleep(0.5)
    return [process.pid for process in alive]


# -- the two families' inputs -----------------------------------------------------------------


@dataclasses.dataclass
class Family:
    """How to make one family's input, run it and read its published estimates."""

    name: str
    command: list[str]
    write_input: Callable[[Path], dict[str, Any]]
    config: Callable[[Path, str], dict[str, Any]]
    estimates: Callable[[Path], pd.DataFrame]
    #: The published folder of a run's output (where the manifest goes last).
    published: Callable[[Path], Path]
    #: CPU-seconds after which a worker is past its imports and fitting (pymc-marketing's
    #: imports take about 10; a warm tracker fit is over in a few).
    fitting_after: float = 8.0


def _mrp_input(folder: Path) -> dict[str, Any]:
    """One market, one brand, 600 respondents: three models; returns the config's wave part."""
    from misterp.mrp.simulate import WaveTruthSpec, simulate_wave

    spec = WaveTruthSpec(
        markets=("DE",),
        brands=("brand01",),
        n_respondents=600,
        rare_brand=None,
        association_options=("new",),
    )
    simulated = simulate_wave(20261001, spec)
    simulated.write(str(folder))
    return simulated.config(str(folder), "unused")


def _mrp_config(folder: Path, output: str) -> dict[str, Any]:
    return {
        "input": str(folder / "input"),
        "output": output,
        "wave": WAVE,
        "sampler": TINY_SAMPLER,
        "convergence": LOOSE_CONVERGENCE,
        "retry": {"max_attempts": 1},
        "workers": 2,
    }


def _mrp_estimates(output: Path) -> pd.DataFrame:
    frame = pd.read_parquet(output / WAVE / "estimates.parquet")
    keys = ["market", "question_id", "option", "target_group"]
    return frame.sort_values(keys)[[*keys, "mean"]].reset_index(drop=True)


def _mmm_input(folder: Path) -> dict[str, Any]:
    """Two markets x two channels x 80 weeks."""
    from misterp.mmm.simulate import simulate_mmm

    simulated = simulate_mmm(7, markets=("DE", "FR"), n_channels=2, n_weeks=80)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in {
        "kpi": simulated.kpi,
        "media": simulated.media,
        "controls": simulated.controls,
    }.items():
        frame.to_csv(folder / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    return {}


def _mmm_config(folder: Path, output: str) -> dict[str, Any]:
    return {
        "input": str(folder / "input"),
        "output": output,
        "run": RUN,
        "controls": ["price"],
        "yearly_seasonality": 1,
        "sampler": TINY_SAMPLER,
        "convergence": LOOSE_CONVERGENCE,
        "retry": {"max_attempts": 1},
        "workers": 2,
    }


def _mmm_estimates(output: Path) -> pd.DataFrame:
    frame = pd.read_parquet(output / "mmm" / RUN / "roas.parquet")
    keys = ["market", "channel"]
    return (
        frame.sort_values(keys)[[*keys, "roas"]]
        .rename(columns={"roas": "mean"})
        .reset_index(drop=True)
    )


FAMILIES = {
    "mrp": Family("mrp", ["run"], _mrp_input, _mrp_config, _mrp_estimates, lambda out: out / WAVE),
    "mmm": Family(
        "mmm",
        ["mmm", "run"],
        _mmm_input,
        _mmm_config,
        _mmm_estimates,
        lambda out: out / "mmm" / RUN,
        fitting_after=20.0,
    ),
}


def publishing(folder: Path) -> bool:
    """Publishing has begun: a published parquet file is there (fits and staging aside)."""
    return folder.exists() and any(
        path.suffix == ".parquet" and not {"fits", "staged"} & set(path.parts)
        for path in folder.rglob("*.parquet")
    )


class Probes:
    """The probes of one family, each in its own folder under ``root``."""

    def __init__(self, family: Family, root: Path, env: dict[str, str]) -> None:
        self.family, self.root, self.env = family, root, env
        self.outcomes: list[Outcome] = []
        self.baseline: pd.DataFrame | None = None

    def folder(self, probe: str, output: str | None = None, **extra: Any) -> tuple[Path, Path]:
        folder = self.root / self.family.name / probe
        wave_part = self.family.write_input(folder / "input")
        config = self.family.config(folder, output or str(folder / "out"))
        config.update({k: v for k, v in wave_part.items() if k not in ("input", "output")})
        config.update(extra)
        path = folder / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return folder, path

    def args(self, config: Path, *more: str) -> list[str]:
        return [*self.family.command, "--config", str(config), *more]

    def record(self, probe: str, expected: str, observed: str, ok: bool) -> None:
        outcome = Outcome(self.family.name, probe, expected, observed, ok)
        self.outcomes.append(outcome)
        print(outcome.line(), flush=True)

    def same_as_baseline(self, output: Path) -> tuple[bool, str]:
        try:
            estimates = self.family.estimates(output)
        except FileNotFoundError as exc:
            return False, f"no estimates ({exc.filename})"
        if self.baseline is None:
            return False, "no baseline"
        equal = estimates.equals(self.baseline)
        if equal:
            return True, "estimates identical to the clean run"
        diff = (estimates["mean"] - self.baseline["mean"]).abs().max()
        return False, f"estimates differ from the clean run (max |diff| {diff:.4g})"

    # -- the probes ---------------------------------------------------------------------------

    def clean(self) -> None:
        folder, config = self.folder("clean")
        code, text = run(self.args(config), self.env)
        ok = code in (0, 1)
        if ok:
            self.baseline = self.family.estimates(folder / "out")
        self.record("clean run", "exit 0/1, published", f"exit {code}: {last_line(text)}", ok)

    def same_seed_again(self) -> None:
        folder, config = self.folder("same-seed")
        code, _text = run(self.args(config), self.env)
        same, said = self.same_as_baseline(folder / "out")
        self.record("same seed, new folder", "identical estimates", f"exit {code}, {said}", same)

    def kill_main(self) -> None:
        folder, config = self.folder("kill-main")
        running = start(self.args(config), self.env)
        pid = running.process.pid
        running.wait_for(lambda: len(fit_workers(pid)) > 0)
        time.sleep(3)
        tree = descendants(pid)
        workers = len(fit_workers(pid))
        running.process.send_signal(signal.SIGKILL)
        running.wait()
        left = survivors(tree)
        self.record(
            "kill -9 main mid-fit",
            "no process left behind",
            f"{workers} fit workers, {len(tree)} descendants; left: {left or 'none'}",
            workers > 0 and not left,
        )
        code, _text = run(self.args(config, "--force"), self.env)
        same, said = self.same_as_baseline(folder / "out")
        self.record(
            "re-run after kill -9 main",
            "completes, same estimates",
            f"exit {code}, {said}",
            code in (0, 1) and same,
        )

    def kill_worker(self) -> None:
        folder, config = self.folder("kill-worker")
        running = start(self.args(config), self.env)
        pid = running.process.pid
        busy = self.family.fitting_after  # a worker past its imports: it is fitting
        running.wait_for(lambda: any(_cpu_seconds(w) > busy for w in fit_workers(pid)))
        workers = [w for w in fit_workers(pid) if _cpu_seconds(w) > busy]
        if workers:
            workers[0].send_signal(signal.SIGKILL)
        code = running.wait()
        observed = f"killed {len(workers[:1])} worker; exit {code}: {last_line(running.text)}"
        if code not in (0, 1):
            code, _text = run(self.args(config), self.env)
            observed += f"; re-run exit {code}"
        same, said = self.same_as_baseline(folder / "out")
        self.record(
            "kill -9 one fit worker",
            "run or re-run completes, same estimates",
            f"{observed}, {said}",
            bool(workers) and code in (0, 1) and same,
        )

    def kill_publish(self) -> None:
        folder, config = self.folder("kill-publish")
        running = start(self.args(config), self.env)
        published = self.family.published(folder / "out")
        deadline = time.monotonic() + 900
        while not publishing(published) and running.process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        running.process.send_signal(signal.SIGKILL)
        running.wait()
        hit = not (published / "manifest.json").exists()
        code, _text = run(self.args(config, "--force"), self.env)
        same, said = self.same_as_baseline(folder / "out")
        self.record(
            "kill -9 main at publish",
            "re-run completes, same estimates",
            f"killed {'mid-publish' if hit else 'too late (manifest written)'}; "
            f"re-run exit {code}, {said}",
            hit and code in (0, 1) and same,
        )

    def two_runs(self) -> None:
        folder, config = self.folder("two-runs")
        first = start(self.args(config), self.env)
        time.sleep(0.5)
        second = start(self.args(config), self.env)
        codes = sorted((first.wait(), second.wait()))
        same, said = self.same_as_baseline(folder / "out")
        self.record(
            "two runs at once",
            "one exits 4, the other completes",
            f"exits {codes}, {said}",
            codes[1] == 4 and codes[0] in (0, 1) and same,
        )

    def outage(self) -> None:
        with moto_server() as (endpoint, stop_and_restart):
            bucket = "probe-outage"
            options = {"client_kwargs": {"endpoint_url": endpoint}}
            make_bucket(endpoint, bucket)
            folder, config = self.folder(
                "s3-outage", output=f"s3://{bucket}/out", storage_options=options
            )
            running = start(self.args(config), self.env)
            pid = running.process.pid
            running.wait_for(lambda: len(fit_workers(pid)) > 0)
            time.sleep(3)
            stop_and_restart()  # the store comes back empty, as after losing its contents
            code = running.wait()
            (folder / "outage-run.log").write_text(running.text)
            first = f"exit {code}: {last_line(running.text)}"
            make_bucket(endpoint, bucket)
            suggested = last_line(running.text, limit=10_000).rsplit("re-run with: ", 1)[-1]
            again = suggested.split()[1:] if suggested.startswith("misterp ") else []
            code2, text2 = run(again or self.args(config), self.env)
            ok = code == 3 and "Traceback" not in running.text and code2 in (0, 1)
            self.record(
                "S3 outage mid-run",
                "exit 3 in one line, its re-run command completes",
                f"{first}; `{' '.join(again) or 'no command'}` exit {code2}: {last_line(text2)}",
                ok,
            )

    def hostile_ids(self) -> None:
        folder, config = self.folder("hostile-ids")
        inputs = folder / "input"
        if self.family.name == "mrp":
            answers = pd.read_csv(inputs / "answers.csv", dtype=str)
            answers.loc[answers.index[:5], "question_id"] = "../../../escape"
            answers.to_csv(inputs / "answers.csv", index=False)
        else:
            media = pd.read_csv(inputs / "media.csv", dtype=str)
            media.loc[media["channel"].eq(media["channel"].iloc[0]), "channel"] = "../escape"
            media.to_csv(inputs / "media.csv", index=False)
        code, text = run(self.args(config), self.env)
        written = (folder / "out").exists() or (self.root / "escape").exists()
        self.record(
            "hostile id '../../../escape'",
            "exit 2, nothing written",
            f"exit {code}, {'written' if written else 'nothing written'}: "
            f"{text.strip().splitlines()[0][:90] if text.strip() else ''}",
            code == 2 and not written,
        )

    def credentials(self) -> None:
        options = {"client_kwargs": {"aws_secret_access_key": SECRET}}
        folder, config = self.folder("credentials", storage_options=options)
        prefect_home = Path(self.env["PREFECT_HOME"])
        code, text = run(self.args(config), self.env)
        found = [
            str(path)
            for path in folder.rglob("*")
            if path.is_file() and path != config and _holds(path)  # the user's own file aside
        ]
        found += [str(path) for path in prefect_home.rglob("*") if path.is_file() and _holds(path)]
        if SECRET in text:
            found.append("the command's output")
        self.record(
            "secret in storage_options",
            "refused (exit 2) or run, secret nowhere",
            f"exit {code}: {last_line(text)[:70]}; secret found in: {found or 'nothing'}",
            not found,
        )


def _holds(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return SECRET.encode() in path.read_bytes()
    return False


# -- a real S3 endpoint ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return process
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto server did not start")


@contextlib.contextmanager
def moto_server() -> Iterator[tuple[str, Callable[[], None]]]:
    """A local S3 endpoint, and a function that stops it for 20 s and starts it again empty."""
    port = _free_port()
    state = {"process": _start_moto(port)}

    def stop_and_restart() -> None:
        state["process"].kill()
        state["process"].wait()
        time.sleep(20)
        state["process"] = _start_moto(port)

    try:
        yield f"http://127.0.0.1:{port}", stop_and_restart
    finally:
        state["process"].kill()


def make_bucket(endpoint: str, bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    with contextlib.suppress(FileExistsError):
        fs.mkdir(bucket)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["mrp", "mmm", "both"], default="both")
    parser.add_argument("--keep", type=Path, help="keep the probes' folders here")
    parser.add_argument("--only", nargs="*", help="run only these probes (method names)")
    options = parser.parse_args()
    root = options.keep or Path(tempfile.mkdtemp(prefix="misterp-probes-"))
    root.mkdir(parents=True, exist_ok=True)
    # the local S3 endpoint takes any credentials; from the environment, as a pod gets them
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect-home"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    order = [
        "clean",
        "same_seed_again",
        "kill_main",
        "kill_worker",
        "kill_publish",
        "two_runs",
        "outage",
        "hostile_ids",
        "credentials",
    ]
    families = ["mrp", "mmm"] if options.family == "both" else [options.family]
    outcomes: list[Outcome] = []
    try:
        for name in families:
            probes = Probes(FAMILIES[name], root, env)
            for probe in order:
                if options.only and probe not in options.only and probe != "clean":
                    continue
                try:
                    getattr(probes, probe)()
                except Exception as exc:  # a probe that breaks is a finding, not the end
                    probes.record(
                        probe, "runs", f"probe failed: {type(exc).__name__}: {exc}", False
                    )
            outcomes += probes.outcomes
    finally:
        if options.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    failed = [outcome for outcome in outcomes if not outcome.ok]
    print(f"\n{len(outcomes) - len(failed)} of {len(outcomes)} probes kept their promise")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
