# One image for everything misterp runs on Kubernetes: the tracking-wave and rerun flows, the
# fit-batch pods and the Prefect worker (prefect-kubernetes is a runtime dependency).
#
#   docker build -t registry.example.com/misterp:0.1.0 .
#
# Two stages: `build` has the compilers and makes the virtual environment, the runtime stage
# only copies it, so no compiler ships in the image that holds the S3 credentials at run time.
# Runs as uid 10001 on a read-only root filesystem: every cache and temporary file goes to /tmp,
# which the pods mount as an emptyDir. No credentials are baked in; S3 keys come from a
# Kubernetes Secret at run time (deployments/work-pools/kubernetes.json).

# Both stages use the same base, pinned by digest (the multi-platform index, so amd64 and arm64
# builds both resolve): the venv built in one runs on the other's /usr/local/bin/python3.12, and
# a moved tag cannot change the image under a rebuild. With a digest, Docker ignores the tag;
# it stays for the reader. To refresh, look up the index digest and the Python it holds,
#
#   docker buildx imagetools inspect python:3.12-slim-bookworm     # "Digest:" at the top
#   docker run --rm python:3.12-slim-bookworm@sha256:NEW python -V
#
# and replace tag and digest here together.
ARG PYTHON_IMAGE=python:3.12.15-slim-bookworm@sha256:54c85f3c47607a77f32adec749d3c81d1348bf25833671f512b26a9b6d778cb3

# --- build: a virtual environment with the locked runtime dependencies and misterp ----------
FROM ${PYTHON_IMAGE} AS build

# Compilers for any dependency that comes as a source distribution. Today every locked runtime
# dependency has a manylinux wheel for amd64 and arm64, so nothing is compiled; this keeps the
# build working when that changes (a new dependency, a platform without wheels), and the
# compilers stay in this stage. Not pinned: the base image digest fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN pip install uv==0.13.9 && python -m venv /opt/venv

WORKDIR /build

# Dependencies first, so a change to src/ or flows/ reuses this layer. requirements.lock also
# pins the [dev] extra (pytest, moto, ruff, mypy, ...), which the image must not carry: resolve
# only pyproject's runtime dependencies, each constrained to its locked version, so the image
# gets exactly the versions the tests ran with and none of the test tools.
COPY pyproject.toml requirements.lock ./
RUN uv pip compile pyproject.toml --constraint requirements.lock \
        --python /opt/venv/bin/python --no-header --output-file requirements.runtime.txt \
    && uv pip install --python /opt/venv/bin/python --compile-bytecode \
        --requirement requirements.runtime.txt

# Then the code: the misterp package and the flows package (pyproject's wheel holds both).
COPY README.md ./
COPY src ./src
COPY flows ./flows
RUN uv pip install --python /opt/venv/bin/python --compile-bytecode --no-deps .

# --- runtime: no compiler --------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="misterp" \
      org.opencontainers.image.description="Bayesian brand tracking (MRP) flows and Prefect worker" \
      org.opencontainers.image.licenses="Apache-2.0"

# tini: a proper PID 1 that forwards SIGTERM (pod eviction) to the flow run and reaps the fit
# processes. Not pinned: the base image digest fixes the Debian release, and its security
# updates should come in. No g++ (see PYTENSOR_FLAGS below).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 misterp \
    && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin misterp

COPY --from=build /opt/venv /opt/venv

# Deployments start here (prefect.yaml's pull step), so the entrypoint flows/wave.py:run_wave
# resolves and flows/* modules import each other.
WORKDIR /opt/misterp
COPY --from=build /build/flows ./flows
COPY --from=build /build/requirements.runtime.txt ./
RUN /opt/venv/bin/python -m compileall -q flows

# Everything that writes goes to /tmp (an emptyDir in the pods; the root filesystem is
# read-only): home, Prefect's home, the PyTensor and numba compile caches, matplotlib's config.
# Bytecode was compiled at build time, so Python never tries to write it.
#
# PyTensor needs no C compiler here: since PyTensor 3 its default linker compiles graphs with
# numba (LLVM, in process), nutpie's compile_pymc_model asks for numba too, and so does PyMC's
# own sampler (the "pymc" backend) through PyTensor's default mode. With g++ present PyTensor
# would still build one C helper (its lazy linker); `cxx=` (empty) tells it there is no
# compiler, so it neither looks for g++ nor tries to build C, and uses its Python code for the
# few small functions compiled outside numba. Checked with both backends on a small wave, with
# no g++ on PATH: same draws, no C artefacts in the compile directory.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/cache \
    PREFECT_HOME=/tmp/prefect \
    PYTENSOR_FLAGS="cxx=,base_compiledir=/tmp/pytensor" \
    NUMBA_CACHE_DIR=/tmp/numba \
    MPLCONFIGDIR=/tmp/matplotlib

USER 10001:10001

# The worker passes the flow-run command (`prefect flow-run execute`) as arguments; k8s/worker.yaml
# passes `prefect worker start ...`.
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["misterp", "--help"]
