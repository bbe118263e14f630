"""Pure rules from the spec, with no I/O: chunk plans (§5.1), URL ownership (§5.3), PKCE (§2.6)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from urllib.parse import urlsplit

from .config import MIB

MIN_CHUNK = 5 * MIB
MAX_CHUNK = 64 * MIB
MAX_FINAL_CHUNK = 128 * MIB
MAX_CHUNKS = 1000
MAX_VIDEO_BYTES = 4 * 1024 * MIB

CHUNK_SIZE_INVALID = "The chunk size is invalid"
CHUNK_COUNT_INVALID = "The total chunk count is invalid"


def chunk_plan_error(video_size: int, chunk_size: int, total_chunk_count: int) -> str | None:
    """The §9.2 step-4 chunk rules. Returns the error message, or None when the plan is acceptable."""
    if video_size <= 0 or chunk_size <= 0 or total_chunk_count <= 0:
        return "video_size, chunk_size and total_chunk_count must be positive"
    if video_size > MAX_VIDEO_BYTES:
        return "The video size is invalid"
    if video_size < MIN_CHUNK:
        if chunk_size != video_size:
            return CHUNK_SIZE_INVALID
        if total_chunk_count != 1:
            return CHUNK_COUNT_INVALID
        return None
    whole = chunk_size == video_size and video_size <= MAX_CHUNK
    if not whole and not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
        return CHUNK_SIZE_INVALID
    if total_chunk_count != video_size // chunk_size:
        return CHUNK_COUNT_INVALID
    if video_size > MAX_CHUNK and total_chunk_count < 2:
        return CHUNK_COUNT_INVALID
    if not 1 <= total_chunk_count <= MAX_CHUNKS:
        return CHUNK_COUNT_INVALID
    if video_size - (total_chunk_count - 1) * chunk_size > MAX_FINAL_CHUNK:
        return CHUNK_SIZE_INVALID
    return None


def expected_chunk_length(index: int, video_size: int, chunk_size: int, total: int) -> int:
    return chunk_size if index < total - 1 else video_size - (total - 1) * chunk_size


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def is_unicode_text(text: str) -> bool:
    """False for a lone UTF-16 surrogate (JSON allows `\\ud800`; no valid text contains one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parses_as_url(url: str) -> bool:
    """`urlsplit` refuses some strings outright (e.g. `https://[::1/v.mp4`); so does TikTok."""
    try:
        parts = urlsplit(url)
        _ = parts.hostname, parts.port
    except ValueError:
        return False
    return True


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def prefix_property_error(prefix: str, *, allow_http: bool, allow_ip: bool) -> str | None:
    """A URL-prefix property is `https://` + host (not an IP) + path + `/` (§5.3)."""
    parts = urlsplit(prefix)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        return f"URL prefix {prefix!r} must be {' or '.join(schemes)} with a host"
    if _is_ip(parts.hostname) and not allow_ip:
        return f"URL prefix {prefix!r} must not use an IP address"
    if not prefix.endswith("/") or parts.query or parts.fragment:
        return f"URL prefix {prefix!r} must end with '/' and have no query or fragment"
    return None


def url_is_verified(
    url: str, domains: tuple[str, ...], prefixes: tuple[str, ...], *, allow_http: bool, allow_ip: bool
) -> bool:
    """True when `url` is pullable: https (or http when allowed) and under a verified property."""
    if not parses_as_url(url):
        return False
    parts = urlsplit(url)
    if parts.scheme not in (("https", "http") if allow_http else ("https",)):
        return False
    host = (parts.hostname or "").lower()
    if not host or (_is_ip(host) and not allow_ip):
        return False
    for domain in domains:
        d = domain.lower().strip(".")
        if host == d or host.endswith("." + d):
            return True
    return any(url.startswith(p) for p in prefixes)


HEX64 = re.compile(r"^[0-9a-f]{64}$")
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def pkce_matches(verifier: str, challenge: str, *, allow_base64url: bool) -> bool:
    """TikTok's S256 is hex(SHA-256(verifier)), not RFC 7636 base64url (§2.6)."""
    if not VERIFIER.match(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    if challenge == digest.hex():
        return True
    if allow_base64url:
        return challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return False


def redirect_uri_error(uri: str, app_type: str) -> str | None:
    """Registration rules for redirect URIs (§2.1)."""
    parts = urlsplit(uri)
    if len(uri) >= 512:
        return "redirect URI must be under 512 characters"
    if parts.fragment:
        return "redirect URI must not have a fragment"
    if app_type == "web":
        if parts.scheme != "https" or not parts.hostname or parts.query:
            return "web redirect URIs must be absolute static https URLs"
        return None
    if parts.scheme not in ("http", "https") or parts.hostname not in ("localhost", "127.0.0.1"):
        return "desktop redirect URIs must be http(s) on localhost or 127.0.0.1"
    if not re.match(r"^[^/]+//[^/]+:(\d+|\*)(/|$)", uri):
        return "desktop redirect URIs need a port (or *)"
    return None


def redirect_uri_matches(registered: str, given: str) -> bool:
    """Exact match, except that a desktop `:*` port matches any port."""
    if ":*" not in registered:
        return registered == given
    pattern = re.escape(registered).replace(re.escape(":*"), r":\d{1,5}")
    return re.fullmatch(pattern, given) is not None


def version_at_least(version: str, minimum: str) -> bool:
    def parse(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", v))

    return parse(version) >= parse(minimum)
