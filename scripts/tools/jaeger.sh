#!/usr/bin/env bash
# Jaeger (the v2 backend: OTLP in, in-memory storage), built once from the Go module proxy and cached
# under ${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin keyed by version; prints the binary's path.
# tests/tracing/test_otlp_trace.py runs it; `make test` builds it before the suite (`make jaeger`).
#
# `go install jaeger@version` is refused (its go.mod has replace directives), so it is built in a
# throwaway module that depends on it. A fresh machine pays about 8 minutes on 2 cores and 2 GB of
# memory; later runs and fresh clones reuse the binary.
#
# Environment: JAEGER_VERSION (default below); JAEGER to use a binary of your own instead.
set -euo pipefail

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
CACHE_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin"
TARGET="$CACHE_BIN/jaeger-$JAEGER_VERSION"
log() { printf 'jaeger: %s\n' "$*" >&2; }

if [[ -n "${JAEGER:-}" ]]; then
    command -v "$JAEGER" >/dev/null || { log "JAEGER=$JAEGER is not executable"; exit 1; }
    printf '%s\n' "$JAEGER"
    exit 0
fi
if [[ -x "$TARGET" ]]; then
    printf '%s\n' "$TARGET"
    exit 0
fi
command -v go >/dev/null || { log "jaeger $JAEGER_VERSION is not cached in $CACHE_BIN and go is not installed"; exit 1; }

log "building jaeger $JAEGER_VERSION from the Go module proxy (once; cached in $CACHE_BIN)"
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$CACHE_BIN"
(
    cd "$work"
    # GOTOOLCHAIN=local: build with the installed Go, never download another toolchain.
    export GOTOOLCHAIN=local GOFLAGS=-trimpath
    go mod init tiktok-pipeline/jaeger-build >/dev/null 2>&1
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION" >&2
    go build -o "$TARGET.tmp.$$" github.com/jaegertracing/jaeger/cmd/jaeger >&2
) || { rm -f "$TARGET.tmp.$$"; log "building jaeger $JAEGER_VERSION failed"; exit 1; }
# Renamed into place so a concurrent run never sees a half-written binary.
mv -f "$TARGET.tmp.$$" "$TARGET"
log "jaeger $JAEGER_VERSION built in $((SECONDS - start)) s"
printf '%s\n' "$TARGET"
