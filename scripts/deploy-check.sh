#!/usr/bin/env bash
# Offline check of the deploy artefacts, for CI and before a release. Needs no cluster and no Docker.
#   1. `helm lint --strict` the chart (deploy/k8s/chart/tiktok-pipeline) with the dev and prod values.
#   2. Render it with `helm template` for dev, prod and the CI variant (deploy/k8s/ci/*.yaml: the
#      optional parts prod leaves off), and the kustomize overlays, which render the same chart
#      (kustomize `helmCharts`); validate every document with `kubernetes-validate --strict`
#      (built-in kinds) and the custom resources (KEDA, Prometheus Operator, Strimzi) against the JSON
#      Schemas in deploy/schemas/ (deploy/tools/validate_crds.py).
#   3. Parse every PromQL expression of the alerts and the Grafana dashboard with Prometheus's own
#      parser (deploy/tools/promql-check).
#   4. `promtool check rules` and `promtool test rules deploy/prometheus/alerts-test.yml`: the alert
#      rules evaluated against recorded series.
#
# Builds its Go tools on first use, from the Go module proxy at pinned versions (helm and kustomize
# with `go install`, promql-check from its go.sum), into ${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin
# keyed by version, so later runs and fresh clones reuse them. A fresh machine pays about 5 minutes
# for helm and 2 for the others on 2 cores; then the check takes seconds.
#
# Environment:
#   HELM / KUSTOMIZE     binaries to use instead (their versions are not checked)
#   HELM_VERSION         the version go install fetches (default below)
#   PROMTOOL             promtool to use instead; PROMTOOL_VERSION the version go install fetches
#   KUSTOMIZE_VERSION    the version go install fetches (default below)
#   KUBERNETES_VERSIONS  space-separated versions to validate against (default below)
#   DEPLOY_CHECK_OUT     directory to keep the rendered YAML in (<name>.yaml); a temp dir otherwise
#   PYTHON               interpreter with kubernetes-validate (default: .venv/bin/python, else python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.1}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"
# promtool's module is prometheus/prometheus, the version promql-check's go.mod already pins.
PROMTOOL_VERSION="${PROMTOOL_VERSION:-v0.316.0}"
# The oldest Kubernetes minor still commonly run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS="${KUBERNETES_VERSIONS:-1.31.0 1.37.0}"
CACHE_BIN="${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/bin"
CHART="$ROOT/deploy/k8s/chart/tiktok-pipeline"
# The cluster version helm renders for (Capabilities, the chart's kubeVersion): the oldest supported.
HELM_KUBE_VERSION="${KUBERNETES_VERSIONS%% *}"
# name: release namespace values-files... (helm template), or name: kustomize overlay.
HELM_RENDERS=(
    "helm-dev tiktok-pipeline-dev tiktok-pipeline-dev deploy/k8s/overlays/dev/values.yaml"
    "helm-prod tiktok-pipeline tiktok-pipeline deploy/k8s/overlays/prod/values.yaml"
    "helm-ci tiktok-pipeline tiktok-pipeline deploy/k8s/overlays/prod/values.yaml deploy/k8s/ci/values-variant.yaml"
)
KUSTOMIZE_RENDERS=(dev prod)

TEMP_DIRS=()
trap 'rm -rf "${TEMP_DIRS[@]}"' EXIT
log() { printf 'deploy-check: %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
"$PYTHON" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null \
    || die "$PYTHON lacks kubernetes-validate (pip install kubernetes-validate==1.37.0, the project's dev extra)"

# go_install NAME PACKAGE VERSION: the cached binary $CACHE_BIN/NAME-VERSION, built once.
go_install() {
    local name="$1" package="$2" version="$3" target gobin start
    target="$CACHE_BIN/$name-$version"
    if [[ -x "$target" ]]; then
        printf '%s' "$target"
        return
    fi
    command -v go >/dev/null || die "$name $version is not cached in $CACHE_BIN and go is not installed"
    log "installing $name $version with go install (once; cached in $CACHE_BIN)"
    start=$SECONDS
    gobin="$(mktemp -d)"
    # GOTOOLCHAIN=local: build with the installed Go, never download another toolchain.
    GOBIN="$gobin" GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -trimpath" go install "$package@$version" >&2 \
        || { rm -rf "$gobin"; die "go install $package@$version failed"; }
    mkdir -p "$CACHE_BIN"
    # Rename into place so a concurrent run never sees a half-written binary.
    mv "$gobin/$name" "$target.tmp.$$" && mv -f "$target.tmp.$$" "$target"
    rm -rf "$gobin"
    log "$name $version installed in $((SECONDS - start)) s"
    printf '%s' "$target"
}

ensure_tool() {
    local var="$1" name="$2" package="$3" version="$4"
    if [[ -n "${!var:-}" ]]; then
        command -v "${!var}" >/dev/null || die "$var=${!var} is not executable"
        return
    fi
    local path
    path="$(go_install "$name" "$package" "$version")" || exit 1
    printf -v "$var" '%s' "$path"
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

ensure_tool HELM helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
ensure_tool KUSTOMIZE kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION"
ensure_promql_check
ensure_tool PROMTOOL promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
log "helm: $("$HELM" version --short 2>/dev/null || echo unknown) ($HELM)"
log "kustomize: $("$KUSTOMIZE" version 2>/dev/null || echo unknown) ($KUSTOMIZE)"

if [[ -n "${DEPLOY_CHECK_OUT:-}" ]]; then
    OUT="$DEPLOY_CHECK_OUT"
    mkdir -p "$OUT"
else
    OUT="$(mktemp -d)"
    TEMP_DIRS+=("$OUT")
fi

kv_args=(--strict --quiet)
for v in $KUBERNETES_VERSIONS; do kv_args+=(-k "$v"); done

failed=0
# helm reads and writes its own config and cache: keep them out of $HOME and the checkout.
HELM_HOME="$(mktemp -d)"
TEMP_DIRS+=("$HELM_HOME")
export HELM_CONFIG_HOME="$HELM_HOME/config" HELM_CACHE_HOME="$HELM_HOME/cache" HELM_DATA_HOME="$HELM_HOME/data"

for values in deploy/k8s/overlays/dev/values.yaml deploy/k8s/overlays/prod/values.yaml; do
    log "helm lint --strict with $values"
    if ! "$HELM" lint --strict --kube-version "$HELM_KUBE_VERSION" "$CHART" -f "$ROOT/$values" 2>&1 | sed 's/^/  /' >&2; then
        log "FAIL: helm lint with $values"
        failed=1
    fi
done

validate() {
    local name="$1" rendered="$OUT/$1.yaml" report="$OUT/$1.kubernetes-validate.txt" docs rc=0
    docs="$(grep -c '^kind: ' "$rendered" || true)"
    log "validate $name ($docs documents) with kubernetes-validate --strict against $KUBERNETES_VERSIONS"
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
}

for spec in "${HELM_RENDERS[@]}"; do
    read -r name release namespace values_files <<<"$spec"
    args=()
    for v in $values_files; do args+=(-f "$ROOT/$v"); done
    log "helm template $name (${values_files// /, })"
    if ! "$HELM" template "$release" "$CHART" --namespace "$namespace" --kube-version "$HELM_KUBE_VERSION" "${args[@]}" >"$OUT/$name.yaml"; then
        log "FAIL: helm template $name"
        failed=1
        continue
    fi
    validate "$name"
done

for overlay in "${KUSTOMIZE_RENDERS[@]}"; do
    log "kustomize build --enable-helm deploy/k8s/overlays/$overlay"
    if ! "$KUSTOMIZE" build --enable-helm --helm-command "$HELM" "$ROOT/deploy/k8s/overlays/$overlay" >"$OUT/$overlay.yaml"; then
        log "FAIL: kustomize build deploy/k8s/overlays/$overlay"
        failed=1
        continue
    fi
    validate "$overlay"
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
log "promtool check rules and test rules (deploy/prometheus/alerts-test.yml)"
if ! { "$PROMTOOL" check rules "$ROOT/deploy/prometheus/alerts.yml" \
        && "$PROMTOOL" test rules "$ROOT/deploy/prometheus/alerts-test.yml"; } 2>&1 | sed 's/^/  /' >&2; then
    log "FAIL: promtool on the alert rules"
    failed=1
fi

log "OK: the chart lints; helm-dev, helm-prod, helm-ci and the dev and prod overlays render and validate; alerts and dashboard PromQL parse; the alert rules pass their unit tests"
