#!/usr/bin/env bash
# Install the Debian packages the project needs, only those that are missing.
# `apt-get update` runs only when something has to be installed. Non-interactive (CI, no stdin).
#
#   system-deps.sh [package...]     default: the list below
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# postgresql: the local stack's database server; openjdk + maven: Kafka (jars resolved by Maven);
# ffmpeg: media probing/fixtures; chromium + chromium-driver: browser tests of the OAuth flow;
# curl, ca-certificates: downloads; nodejs + npm: the event contracts' reader outside Python (Ajv);
# kcat: the Kafka one-liner `make up` prints (tested).
DEFAULT_PACKAGES=(postgresql openjdk-17-jre-headless maven ffmpeg chromium chromium-driver curl ca-certificates nodejs npm kcat)

if (($# > 0)); then
    packages=("$@")
else
    packages=("${DEFAULT_PACKAGES[@]}")
fi

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

# Java from elsewhere (e.g. a JDK on PATH) is fine as long as it is 17 or newer.
java_ok() {
    command -v java >/dev/null || return 1
    local major
    major="$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')"
    [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 17))
}

missing=()
for pkg in "${packages[@]}"; do
    case "$pkg" in
        openjdk-17-jre-headless) java_ok && continue ;;
        maven) command -v mvn >/dev/null && continue ;;
        nodejs) command -v node >/dev/null && continue ;;
        npm) command -v npm >/dev/null && continue ;;
    esac
    installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
    log "system packages: all present"
    exit 0
fi

command -v apt-get >/dev/null || die_with_log "missing system packages (${missing[*]}) and no apt-get to install them"
SUDO=()
if [[ $EUID -ne 0 ]]; then
    command -v sudo >/dev/null || die_with_log "missing system packages (${missing[*]}): run as root or install sudo"
    SUDO=(sudo -n)
fi
log "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q </dev/null
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
