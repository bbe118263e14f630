#!/usr/bin/env bash
# What `make image` needs on the machine: buildah (builds and runs images without a Docker engine)
# and debootstrap (the stand-in base when no registry is reachable). Installs only what is missing.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../stack/system-deps.sh" buildah debootstrap
