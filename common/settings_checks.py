"""Start-up checks on secret and security settings, as pure functions (table-tested in
tests/unit/test_settings_checks.py).

Each check takes the variable's name and its raw value and raises :class:`ConfigError` with a message
that names the variable and what is wrong, never the value itself (it may be a secret). The
services' ``Settings.from_env`` call them before anything starts.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from urllib.parse import urlsplit

from common.errors import ConfigError

MIN_API_KEY_LENGTH = 24
"""``secrets.token_urlsafe(18)`` is 24 characters (144 bits); anything shorter is guessable."""

PRESIGN_TTL_MIN_S = 60
PRESIGN_TTL_MAX_S = 7 * 24 * 3600
"""S3 SigV4 refuses longer; a presigned URL is a bearer credential for the media until it expires."""

_B64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
_LOOPBACK_NAMES = frozenset({"localhost"})


def key_ring_entries(name: str, spec: str) -> list[tuple[str, bytes]]:
    """Parse ``kid:base64key,…`` strictly: no duplicate ids, only base64url characters, no all-zero key.

    (``base64.urlsafe_b64decode`` silently skips characters outside the alphabet, and a dict silently
    keeps the last of two equal ids: both would start the service with keys nobody intended.)
    """
    entries: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        kid, sep, encoded = item.partition(":")
        kid, encoded = kid.strip(), encoded.strip()
        if not sep:
            raise ConfigError(f"{name}: each entry must be key_id:base64key")
        if kid in seen:
            raise ConfigError(f"{name}: key id {kid!r} appears twice (each id must name one key)")
        seen.add(kid)
        if not _B64URL.match(encoded):
            raise ConfigError(
                f"{name}: key {kid!r} holds characters outside base64url (A-Z a-z 0-9 - _, '=' padding)"
            )
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise ConfigError(f"{name}: key {kid!r} is not valid base64") from None
        if key and not any(key):
            raise ConfigError(f"{name}: key {kid!r} is all zero bytes; generate a random key")
        entries.append((kid, key))
    if not entries:
        raise ConfigError(f"{name} holds no keys")
    return entries


def distinct_key_rings(name_a: str, spec_a: str, name_b: str, spec_b: str) -> None:
    """Two rings for two purposes must not share key material (one leak would open both)."""
    shared = {key for _, key in key_ring_entries(name_a, spec_a)} & {
        key for _, key in key_ring_entries(name_b, spec_b)
    }
    if shared:
        raise ConfigError(f"{name_a} and {name_b} must not share a key; give each its own keys")


def api_key_strength(name: str, value: str) -> None:
    if len(value) < MIN_API_KEY_LENGTH:
        raise ConfigError(
            f"{name} must be at least {MIN_API_KEY_LENGTH} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )


def is_loopback_host(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def https_unless_local(name: str, url: str, *, allow_http: bool = False) -> None:
    """TikTok's API carries the client secret and tokens: https, except in local mode: a loopback
    host (the test sandbox, ``tiktok-pipeline local``) or ``TIKTOK_ALLOW_HTTP=true`` (the compose and
    dev-cluster sandbox, reached by a service name)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and (allow_http or is_loopback_host(parts.hostname)):
        return
    raise ConfigError(
        f"{name} must be an https:// URL (http:// only in local mode: a loopback host, "
        "or TIKTOK_ALLOW_HTTP=true for a sandbox)"
    )


def bounded_presign_ttl(name: str, seconds: int) -> None:
    if not PRESIGN_TTL_MIN_S <= seconds <= PRESIGN_TTL_MAX_S:
        raise ConfigError(
            f"{name} must be between {PRESIGN_TTL_MIN_S} and {PRESIGN_TTL_MAX_S} seconds, got {seconds}"
        )
