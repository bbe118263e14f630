#!/usr/bin/env bash
# Offline check of the deploy artefacts, for CI and before a release. Needs no cluster and no Docker.
#   1. Render the kustomize base and each overlay; validate every document with
#      `kubernetes-validate --strict` (built-in kinds) and the custom resources (KEDA's ScaledObject)
#      against the JSON Schemas in deploy/schemas/ (deploy/tools/validate_crds.py).
#   2. Parse every PromQL expression of deploy/prometheus/alerts.yml and the Grafana dashboard with
#      Prometheus's own parser (deploy/tools/promql-check).
#
# Builds its two Go tools on first use, from the Go module proxy at pinned versions (kustomize with
# `go install`, promql-check from its go.sum), into ${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin,
# so later runs and fresh clones reuse them. First run about 2 minutes on 2 cores, then seconds.
#
# Environment:
#   KUSTOMIZE            a kustomize binary to use instead (its version is not checked)
#   KUSTOMIZE_VERSION    the version go install fetches (default below)
#   KUBERNETES_VERSIONS  space-separated versions to validate against (default below)
#   DEPLOY_CHECK_OUT     directory to keep the rendered YAML in (<name>.yaml); a temp dir otherwise
#   PYTHON               interpreter with kubernetes-validate (default: .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
# The oldest Kubernetes minor still commonly run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.31.0 1.37.0}"
CACHE_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin"
TARGETS=(base overlays/dev overlays/prod)

log() { printf 'deploy-check: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
    || die "$PYTHON lacks kubernetes-validate (pip install kubernetes-validate==1.37.0, the project's dev extra)"

ensure_kustomize() {
    if [[ -n "${KUSTOMIZE:-}" ]]; then
        command -v "$KUSTOMIZE" >/dev/null || die "KUSTOMIZE=$KUSTOMIZE is not executable"
        return
    fi
    KUSTOMIZE="$CACHE_BIN/kustomize-$KUSTOMIZE_VERSION"
    if [[ -x "$KUSTOMIZE" ]]; then
        return
    fi
    command -v go >/dev/null || die "kustomize $KUSTOMIZE_VERSION is not cached in $CACHE_BIN and go is not installed"
    log "installing kustomize $KUSTOMIZE_VERSION with go install (once; cached in $CACHE_BIN)"
    local gobin start
    start=$SECONDS
    gobin="$(mktemp -d)"
    # GOTOOLCHAIN=local: build with the installed Go, never download another toolchain.
    GOBIN="$gobin" GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -trimpath" \
        go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" \
        || { rm -rf "$gobin"; die "go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION failed"; }
    mkdir -p "$CACHE_BIN"
    # Rename into place so a concurrent run never sees a half-written binary.
    mv "$gobin/kustomize" "$KUSTOMIZE.tmp.$$" && mv -f "$KUSTOMIZE.tmp.$$" "$KUSTOMIZE"
    rm -rf "$gobin"
    log "kustomize installed in $((SECONDS - start)) s"
}

# promql-check is built from deploy/tools/promql-check; the cached binary is named by the hash of its
# sources, so a change to them builds a new one.
ensure_promql_check() {
    local src="$ROOT/deploy/tools/promql-check" hash start
    hash="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
    PROMQL_CHECK="$CACHE_BIN/promql-check-$hash"
    if [[ -x "$PROMQL_CHECK" ]]; then
        return
    fi
    command -v go >/dev/null || die "promql-check is not cached in $CACHE_BIN and go is not installed"
    log "building promql-check (once; cached in $CACHE_BIN)"
    start=$SECONDS
    mkdir -p "$CACHE_BIN"
    (cd "$src" && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -o "$PROMQL_CHECK.tmp.$$" .) \
        || die "building deploy/tools/promql-check failed"
    mv -f "$PROMQL_CHECK.tmp.$$" "$PROMQL_CHECK"
    log "promql-check built in $((SECONDS - start)) s"
}

ensure_kustomize
ensure_promql_check
log "kustomize: $("$KUSTOMIZE" version 2>/dev/null || echo unknown) ($KUSTOMIZE)"

if [[ -n "${DEPLOY_CHECK_OUT:-}" ]]; then
    OUT="$DEPLOY_CHECK_OUT"
    mkdir -p "$OUT"
else
    OUT="$(mktemp -d)"
    trap 'rm -rf "$OUT"' EXIT
fi

kv_args=(--strict --quiet)
for v in $KUBERNETES_VERSIONS; do kv_args+=(-k "$v"); done

failed=0
for target in "${TARGETS[@]}"; do
    name="${target##*/}"
    rendered="$OUT/$name.yaml"
    report="$OUT/$name.kubernetes-validate.txt"
    log "render deploy/k8s/$target"
    if ! "$KUSTOMIZE" build "$ROOT/deploy/k8s/$target" >"$rendered"; then
        log "FAIL: kustomize build deploy/k8s/$target"
        failed=1
        continue
    fi
    docs="$(grep -c '^kind: ' "$rendered" || true)"
    log "validate $name ($docs documents) with kubernetes-validate --strict against $KUBERNETES_VERSIONS"
    rc=0
    "$PYTHON" -m kubernetes_validate "${kv_args[@]}" "$rendered" >"$report" 2>&1 || rc=$?
    # Custom resources are reported as WARN (no schema) and passed: show that, then validate them.
    sed 's/^/  /' "$report" >&2
    if [[ $rc -ne 0 ]]; then
        log "FAIL: kubernetes-validate rejected $name"
        failed=1
    fi
    # pipefail makes this fail when validate_crds.py does.
    if ! "$PYTHON" "$ROOT/deploy/tools/validate_crds.py" "$rendered" "$report" | sed 's/^/  /' >&2; then
        log "FAIL: custom resources in $name"
        failed=1
    fi
done

log "parse the PromQL of deploy/prometheus/alerts.yml and deploy/grafana/*.json"
if ! "$PYTHON" "$ROOT/deploy/tools/promql_exprs.py" "$ROOT/deploy/prometheus/alerts.yml" \
        "$ROOT"/deploy/grafana/*.json | "$PROMQL_CHECK" | sed 's/^/  /' >&2; then
    log "FAIL: invalid PromQL"
    failed=1
fi

if [[ $failed -ne 0 ]]; then
    die "deploy artefacts are invalid (rendered output in $OUT)"
fi
log "OK: ${TARGETS[*]} render and validate; alerts and dashboard PromQL parse"
