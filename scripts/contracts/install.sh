#!/usr/bin/env bash
# Installs the Node side of the event-contract check (Ajv and ajv-formats, pinned by package-lock.json)
# into ${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/node-contracts-<lock hash>, once per lock file,
# and prints that directory. `make install` runs it; tests/unit/test_contract_vectors.py runs it too, so a
# fresh clone works either way. Needs node and npm (Debian: apt-get install nodejs npm).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v node >/dev/null || { echo "node is not installed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm is not installed (Debian: apt-get install npm)" >&2; exit 1; }
HASH="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -c1-16)"
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline/node-contracts-$HASH"
if [[ ! -f "$DEST/.installed" ]]; then
    tmp="$(mktemp -d "${DEST}.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$(dirname "$DEST")"; mktemp -d "${DEST}.tmp.XXXXXX"; })"
    cp "$HERE/package.json" "$HERE/package-lock.json" "$tmp/"
    npm ci --prefix "$tmp" --ignore-scripts --no-audit --no-fund --loglevel=error >&2 \
        || { rm -rf "$tmp"; echo "npm ci failed for the contract check's Node packages" >&2; exit 1; }
    touch "$tmp/.installed"
    # Rename into place so a concurrent run never sees a half-installed tree.
    if ! mv -T "$tmp" "$DEST" 2>/dev/null; then rm -rf "$tmp"; fi
fi
echo "$DEST"
