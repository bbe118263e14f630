# One image for every entry point; the container's command picks one:
#   python -m auth_service             HTTP on $HTTP_HOST:$HTTP_PORT (8081)
#   python -m publish_service          HTTP on $HTTP_HOST:$HTTP_PORT (8082)
#   python -m tiktok_sandbox --host 0.0.0.0 --port 18080
#   python -m auth_service migrate | python -m publish_service migrate | tiktok-pipeline create-topics
#
# The runtime stage runs as uid/gid 10001 and writes nothing outside /tmp, so it runs unchanged with
# a read-only root filesystem (Kubernetes mounts an emptyDir on /tmp; see deploy/k8s/).

# PYTHON_IMAGE builds, RUNTIME_IMAGE runs (the same image unless a base without pip is at hand, as
# scripts/image/base.sh makes). No digest is pinned: none could be checked from where this project is
# built (no registry reachable); pass PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> to pin.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG RUNTIME_IMAGE=${PYTHON_IMAGE}

# ---- builder: the locked dependencies and the project, installed into a venv -----------------------
FROM ${PYTHON_IMAGE} AS builder

# PIP_CERT: a CA bundle mounted at build time (scripts/image/build.sh), when pip must trust the host's.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first, from the lock alone (every version pinned, every file hash-checked), so that code
# changes reuse this layer. Wheels only: every locked package ships them for CPython 3.11 on amd64 and
# arm64, so no compiler is needed, here or later.
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: --no-deps -r requirements/runtime.txt \
    && python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.txt

# Then the project itself (.dockerignore keeps tests, deploy files, caches and virtualenvs out), built
# offline with the locked setuptools.
COPY . .
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-index --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall -y pip setuptools

# ---- runtime ----------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime

LABEL org.opencontainers.image.title="tiktok-pipeline" \
      org.opencontainers.image.description="auth_service, publish_service and tiktok_sandbox in one image" \
      org.opencontainers.image.licenses="Apache-2.0"

# No pip at run time (the official base has one; the Debian-made runtime base has none).
RUN if python -m pip --version >/dev/null 2>&1; then python -m pip uninstall -y pip setuptools wheel; fi \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

# The bytecode was compiled at build time; at run time nothing may be written beside the code.
# HOME and TMPDIR point at /tmp, the only writable path.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    HTTP_HOST=0.0.0.0 \
    LOG_FORMAT=json

WORKDIR /tmp
USER 10001:10001

EXPOSE 8081 8082 18080

# No HEALTHCHECK: the port and path depend on the entry point; Kubernetes probes and compose
# healthchecks name them per container.
# The services handle SIGTERM themselves (graceful, within SHUTDOWN_DEADLINE_SECONDS), so python runs
# as PID 1 directly rather than under a shell.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "auth_service"]
