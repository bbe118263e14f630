#!/usr/bin/env bash
# A stand-in for python:3.11-slim-bookworm made from Debian's own packages, for machines that reach
# Debian's package mirror but no container registry. Prints two image names on stdout:
#   BUILDER_IMAGE=...   python3.11 + venv + pip (the Dockerfile's builder stage)
#   RUNTIME_IMAGE=...   python3.11 only: no pip, no compiler (the runtime stage)
#
# The rootfs tarballs are cached in ${CACHE_DIR:-~/.cache/tiktok-pipeline}/base-<key>-{runtime,builder}.tar,
# keyed by a hash of this script, so a changed recipe builds a new base and an unchanged one costs
# only the import into buildah's storage (skipped when the tagged image is already there).
#
#   base.sh                (needs root, debootstrap and buildah: scripts/image/deps.sh installs them)
set -euo pipefail

SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python-is-python3: `python` on PATH, as in the official image; ca-certificates: TLS to TikTok and S3.
RUNTIME_PACKAGES=python3.11,python3.11-minimal,python-is-python3,ca-certificates,tzdata
BUILDER_PACKAGES=(python3.11-venv python3-pip)

CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tiktok-pipeline}"
key="$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-12)"
runtime_tar="$CACHE_DIR/base-$key-runtime.tar"
builder_tar="$CACHE_DIR/base-$key-builder.tar"
runtime_image="localhost/tiktok-pipeline-base:$key-runtime"
builder_image="localhost/tiktok-pipeline-base:$key-builder"

say() { echo "base.sh: $*" >&2; }

make_rootfs() {
    local work rootfs
    work="$(mktemp -d "${TMPDIR:-/tmp}/tiktok-pipeline-base.XXXXXX")"
    rootfs="$work/rootfs"
    # shellcheck disable=SC2064  # expand now: the trap must remove this run's directory
    # --one-file-system: never follow into a /proc or /dev that a failed debootstrap left mounted.
    trap "rm -rf --one-file-system '$work'" RETURN
    say "debootstrap --variant=minbase $SUITE (a few minutes on a fresh machine)"
    debootstrap --variant=minbase --include="$RUNTIME_PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; say "debootstrap failed"; return 1; }
    # Smaller, like the slim image: no apt lists, no docs, no man pages, no locales but C.
    clean() {
        rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/apt/archives/*.deb \
            "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/var/log/*.log "$1"/tmp/*
    }
    clean "$rootfs"
    mkdir -p "$CACHE_DIR"
    tar -C "$rootfs" --one-file-system --numeric-owner -cf "$runtime_tar.part" . && mv "$runtime_tar.part" "$runtime_tar"

    say "adding ${BUILDER_PACKAGES[*]} for the builder base"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    chroot "$rootfs" apt-get update -q >"$work/apt.log" 2>&1 \
        && chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${BUILDER_PACKAGES[@]}" >>"$work/apt.log" 2>&1 \
        || { tail -n 30 "$work/apt.log" >&2; say "apt-get in the builder base failed"; return 1; }
    clean "$rootfs"
    tar -C "$rootfs" --one-file-system --numeric-owner -cf "$builder_tar.part" . && mv "$builder_tar.part" "$builder_tar"
}

import() {  # import TAR IMAGE: a one-layer image from a rootfs tarball
    local tarball=$1 image=$2 ctr
    buildah inspect --type image "$image" >/dev/null 2>&1 && return 0
    say "importing $image"
    ctr="$(buildah from --quiet scratch)"
    buildah add --quiet "$ctr" "$tarball" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 "$ctr"
    buildah commit --quiet --rm "$ctr" "$image" >/dev/null
}

if [[ ! -f "$runtime_tar" || ! -f "$builder_tar" ]]; then
    make_rootfs
fi
import "$runtime_tar" "$runtime_image"
import "$builder_tar" "$builder_image"
echo "BUILDER_IMAGE=$builder_image"
echo "RUNTIME_IMAGE=$runtime_image"
