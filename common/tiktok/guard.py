"""What the TikTok client refuses to do on an answer's say-so (issue 12, points 5 and 6).

- Follow a redirect: aiohttp would re-send the form body (``client_secret``, a refresh token or an
  authorization code) to wherever ``Location`` points. A 3xx is :class:`TikTokRedirect` instead.
- Send the creator's media to any ``upload_url`` an init answer names: only https on TikTok's upload
  domains (configurable), or the origin of the configured API base (the sandbox, in tests and local
  runs), is accepted.
- Read an answer of any size into memory: bodies are read up to a limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import aiohttp

from common.tiktok.errors import TikTokError, TikTokTransportError

MAX_BODY_BYTES = 1024 * 1024
"""TikTok's JSON answers are a few KiB; anything past this is not one of them."""

DEFAULT_UPLOAD_DOMAINS = ("tiktokapis.com",)
"""``open-upload.tiktokapis.com``, ``upload.us.tiktokapis.com`` (spec §1): hosts under these domains."""


class TikTokRedirect(TikTokTransportError):
    """TikTok's API answered with a redirect, which is never followed."""

    code = "tiktok_redirect"

    def __init__(self, status: int, location: str | None, *, endpoint: str) -> None:
        host = urlsplit(location).hostname if location else None
        super().__init__(
            f"HTTP {status} redirect to {host or 'no location'!s}; redirects are never followed "
            "(the request would be re-sent, credentials included, to that host)",
            maybe_applied=False,
            endpoint=endpoint,
        )
        self.status = status
        self.location_host = host


def check_redirect(status: int, headers: Mapping[str, str], *, endpoint: str) -> None:
    if 300 <= status < 400:
        raise TikTokRedirect(status, headers.get("Location"), endpoint=endpoint)


async def read_limited(
    response: aiohttp.ClientResponse, *, endpoint: str, limit: int = MAX_BODY_BYTES
) -> bytes:
    """The body, or :class:`TikTokTransportError` once it passes ``limit`` bytes (never all in memory)."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise TikTokTransportError(
            f"the answer declares {declared} bytes; at most {limit} are read",
            maybe_applied=True,
            endpoint=endpoint,
        )
    body = bytearray()
    async for piece in response.content.iter_chunked(64 * 1024):
        body += piece
        if len(body) > limit:
            raise TikTokTransportError(
                f"the answer is larger than {limit} bytes", maybe_applied=True, endpoint=endpoint
            )
    return bytes(body)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def check_upload_url(url: str, *, domains: Iterable[str], api_base: str, endpoint: str) -> str:
    """``url`` if the media may be sent there; :class:`TikTokError` ``invalid_upload_url`` otherwise."""
    try:
        scheme, host, port = _origin(url)
    except ValueError:  # a port that is not a number
        scheme, host, port = "", "", None
    if host and (scheme, host, port) == _origin(api_base):
        return url  # the configured API's own origin: TikTok, or the sandbox standing in for it
    if scheme == "https" and host and any(host == d or host.endswith("." + d) for d in domains):
        return url
    raise TikTokError(
        "invalid_upload_url",
        f"the init answer's upload_url points at {host or 'no host'!r} over {scheme or 'no scheme'!r}; "
        "the media is only sent over https to hosts under TIKTOK_UPLOAD_DOMAINS",
        status=200,
        endpoint=endpoint,
    )
