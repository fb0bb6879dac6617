"""The Dockerfile: pinned base images, no compiler in the runtime image, and the runtime settings.

No Docker engine here, so the Dockerfile is read the way Docker reads it (comments dropped,
continuation lines joined, build stages split at FROM) and its instructions are checked.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
POOL_TEMPLATE = ROOT / "deployments" / "work-pools" / "kubernetes.json"

# Debian packages that put a C/C++ compiler in the image (also as e.g. gcc-12, clang-16).
COMPILER_PACKAGE = re.compile(r"(build-essential|gcc|g\+\+|cpp|c\+\+|clang|llvm)(-[\w.]+)?")
# name[:tag]@sha256:<64 hex>; the tag is optional for Docker but kept here for the reader.
PINNED_IMAGE = re.compile(r"(?P<name>[\w.\-/]+):(?P<tag>[\w.\-]+)@sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Stage:
    """One build stage: its base, its name (``AS``) and its instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]]


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` pairs, as Docker sees them after comments and continuations."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (keyword.upper(), arguments.strip())
        for keyword, _, arguments in (line.strip().partition(" ") for line in joined.splitlines())
        if keyword
    ]


def _stages(text: str) -> list[Stage]:
    """The build stages, with ``${ARG}`` in FROM resolved from the ARG defaults before it."""
    instructions = _instructions(text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, arguments in instructions:
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            tokens = [t for t in arguments.split() if not t.startswith("--platform")]
            base = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), tokens[0]
            )
            name = tokens[2] if len(tokens) > 2 and tokens[1].upper() == "AS" else None
            stages.append(Stage(base, name, []))
        elif stages:
            stages[-1].instructions.append((keyword, arguments))
    return stages


def _apt_installed(run: str) -> list[str]:
    """Packages named in the ``apt-get install`` / ``apt install`` commands of a RUN line."""
    packages: list[str] = []
    for command in re.split(r"&&|\|\||;|\|", run):
        tokens = shlex.split(command)
        if tokens[:1] in (["apt-get"], ["apt"]) and "install" in tokens:
            after = tokens[tokens.index("install") + 1 :]
            packages += [re.split(r"[=:]", t)[0] for t in after if not t.startswith("-")]
    return packages


def _compilers_in_final_stage(text: str) -> list[str]:
    final = _stages(text)[-1]
    return [
        package
        for keyword, arguments in final.instructions
        if keyword == "RUN"
        for package in _apt_installed(arguments)
        if COMPILER_PACKAGE.fullmatch(package)
    ]


def _unpinned_bases(text: str) -> list[str]:
    """FROM images not pinned by tag and digest; a FROM of an earlier stage is not an image."""
    stages = _stages(text)
    names = {stage.name for stage in stages if stage.name}
    return [
        stage.base
        for stage in stages
        if stage.base not in names and not PINNED_IMAGE.fullmatch(stage.base)
    ]


def _env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, arguments in stage.instructions:
        if keyword == "ENV":
            for token in shlex.split(arguments):
                key, _, value = token.partition("=")
                env[key] = value
    return env


# --- the helpers catch what the tests below look for ------------------------------------------

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        (
            f"FROM python:3.12-slim@{DIGEST}\nRUN apt-get update && apt-get install -y g++\n",
            ["g++"],
        ),
        (
            f"ARG BASE=python:3.12-slim@{DIGEST}\nFROM ${{BASE}} AS build\n"
            "RUN apt-get install --yes build-essential\nFROM ${BASE}\n"
            "RUN apt-get update \\\n  # a comment inside a continued RUN\n"
            "  && apt-get install --yes --no-install-recommends tini gcc-12=12.2.0-14 \\\n"
            "  && rm -rf /var/lib/apt/lists/*\n",
            ["gcc-12"],
        ),
        (f"FROM python:3.12-slim@{DIGEST}\nRUN apt-get install -y tini\n", []),
    ],
    ids=["one-stage-g++", "gcc-in-the-last-of-two-stages", "no-compiler"],
)
def test_compiler_check_finds_compilers_in_the_last_stage_only(
    dockerfile: str, expected: list[str]
) -> None:
    assert _compilers_in_final_stage(dockerfile) == expected


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        ("FROM python:3.12-slim\n", ["python:3.12-slim"]),
        (f"FROM python@{DIGEST}\n", [f"python@{DIGEST}"]),  # pinned, but the tag is lost
        ("ARG BASE=python:3.12-slim\nFROM $BASE AS build\nFROM build\n", ["python:3.12-slim"]),
        (f"FROM --platform=$BUILDPLATFORM python:3.12-slim@{DIGEST} AS build\nFROM build\n", []),
    ],
    ids=["tag-only", "digest-only", "via-arg", "pinned-then-stage"],
)
def test_pin_check_finds_unpinned_bases(dockerfile: str, expected: list[str]) -> None:
    assert _unpinned_bases(dockerfile) == expected


# --- the repository's Dockerfile --------------------------------------------------------------


def test_every_base_image_is_pinned_by_tag_and_digest() -> None:
    assert _unpinned_bases(DOCKERFILE.read_text()) == []


def test_the_image_builds_in_one_stage_and_runs_from_another() -> None:
    # The runtime copies the build stage's venv, whose python is a symlink into the base image:
    # both stages must start from the very same image, or it breaks (or silently differs).
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2
    assert len({stage.base for stage in stages}) == 1
    final = stages[-1]
    copies = [arguments for keyword, arguments in final.instructions if keyword == "COPY"]
    # Same path on both sides: the venv's scripts start with #!/opt/venv/bin/python.
    assert f"--from={stages[0].name} /opt/venv /opt/venv" in copies


def test_the_runtime_stage_installs_no_compiler() -> None:
    assert _compilers_in_final_stage(DOCKERFILE.read_text()) == []


def test_the_runtime_tells_pytensor_there_is_no_compiler_and_caches_in_tmp() -> None:
    # Without `cxx=`, PyTensor probes for g++ at import and compiles C wherever it finds one
    # (an image derived from ours that adds g++); empty states the no-compiler setup explicitly.
    env = _env(_stages(DOCKERFILE.read_text())[-1])
    flags = dict(flag.partition("=")[::2] for flag in env["PYTENSOR_FLAGS"].split(","))
    assert flags["cxx"] == ""
    assert flags["base_compiledir"].startswith("/tmp/")
    assert env["NUMBA_CACHE_DIR"].startswith("/tmp/")


def test_the_runtime_runs_as_the_uid_of_the_flow_run_pods() -> None:
    final = _stages(DOCKERFILE.read_text())[-1]
    (user,) = [arguments for keyword, arguments in final.instructions if keyword == "USER"]
    pod = json.loads(POOL_TEMPLATE.read_text())["job_configuration"]["job_manifest"]
    security = pod["spec"]["template"]["spec"]["securityContext"]
    assert user == f"{security['runAsUser']}:{security['runAsGroup']}"
