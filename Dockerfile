# One image for every entry point; the container's command picks one:
#   python -m auth_service             HTTP on $HTTP_HOST:$HTTP_PORT (8081)
#   python -m publish_service          HTTP on $HTTP_HOST:$HTTP_PORT (8082)
#   python -m tiktok_sandbox --host 0.0.0.0 --port 18080
#   python -m auth_service migrate | python -m publish_service migrate | tiktok-pipeline create-topics
#
# The runtime stage runs as uid/gid 10001 and writes nothing outside /tmp, so it runs unchanged with
# a read-only root filesystem (Kubernetes mounts an emptyDir on /tmp; see deploy/k8s/).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: wheels for the dependencies and the project, installed into a venv ------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

# Every pinned dependency ships manylinux wheels for CPython 3.11 on amd64 and arm64; the compiler is
# only a fallback for a platform where one does not, and it never reaches the runtime stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip wheel --wheel-dir /wheels -r /tmp/requirements.txt

# Then the project itself (.dockerignore keeps tests, deploy files, caches and virtualenvs out).
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links=/wheels --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib \
    && /opt/venv/bin/pip uninstall -y pip

# ---- runtime ----------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="tiktok-pipeline" \
      org.opencontainers.image.description="auth_service, publish_service and tiktok_sandbox in one image" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 app \
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
