#!/usr/bin/env bash
# Build the Dockerfile with buildah (chroot isolation: no daemon, no user namespaces needed).
#
#   IMAGE=localhost/tiktok-pipeline:dev scripts/image/build.sh
#
# PYTHON_IMAGE: the base. Default python:3.11-slim-bookworm from a registry; when none can be pulled
# (as on machines that reach only package mirrors), a stand-in made from Debian's packages
# (scripts/image/base.sh, cached). The host's CA bundle is mounted into the RUN steps so that pip
# trusts what the host trusts (e.g. a proxy's CA), and nothing of it stays in the image.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

IMAGE="${IMAGE:-localhost/tiktok-pipeline:dev}"
# No digest is pinned here: no registry is reachable from the machines this project is built on, so
# none could be checked. Pass PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest> to pin one.
PYTHON_IMAGE="${PYTHON_IMAGE:-docker.io/library/python:3.11-slim-bookworm}"
HOST_BUNDLE="${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
IMAGE_BUNDLE=/etc/ssl/certs/ca-certificates.crt

say() { echo "build.sh: $*" >&2; }

if timeout 60 buildah pull --quiet "$PYTHON_IMAGE" >/dev/null 2>&1; then
    say "base: $PYTHON_IMAGE"
    bases=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "RUNTIME_IMAGE=$PYTHON_IMAGE")
else
    say "$PYTHON_IMAGE cannot be pulled: using the stand-in base made from Debian's packages"
    stand_in="$(scripts/image/base.sh)"
    builder="$(sed -n 's/^BUILDER_IMAGE=//p' <<<"$stand_in")"
    runtime="$(sed -n 's/^RUNTIME_IMAGE=//p' <<<"$stand_in")"
    bases=(--build-arg "PYTHON_IMAGE=$builder" --build-arg "RUNTIME_IMAGE=$runtime")
fi

mounts=()
if [[ -f "$HOST_BUNDLE" ]]; then
    mounts=(-v "$HOST_BUNDLE:$IMAGE_BUNDLE:ro" --build-arg "PIP_CERT=$IMAGE_BUNDLE")
fi

start=$SECONDS
buildah bud --isolation chroot --layers --pull-never "${bases[@]}" "${mounts[@]}" -t "$IMAGE" -f Dockerfile . >&2
say "built $IMAGE in $((SECONDS - start))s"
buildah images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE" >&2
