"""Checking the ``TikTok-Signature`` header of webhook POSTs (spec §8.4)."""

from __future__ import annotations

import hashlib
import hmac
import re


class BadSignature(ValueError):
    pass


_TIMESTAMP = re.compile(r"[0-9]{1,12}")
"""Decimal digits only: ``int()`` also reads ``+T``, `` T``, ``1_7…`` and non-ASCII digits, and the MAC
is over the text as sent, so each of those would be a second spelling of one signed timestamp."""
_MAC = re.compile(r"[0-9a-fA-F]{64}")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},s={mac}"


def verify(header: str | None, body: bytes, secret: str, *, now: float, tolerance: float = 300.0) -> int:
    """Return the signed timestamp; raise :class:`BadSignature` naming what is wrong."""
    if not header:
        raise BadSignature("the TikTok-Signature header is missing")
    parts: dict[str, str] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts[key] = value
    if "t" not in parts or "s" not in parts:
        raise BadSignature("the TikTok-Signature header needs t= and s=")
    signed_t, given = parts["t"], parts["s"]
    if not _TIMESTAMP.fullmatch(signed_t):
        raise BadSignature("the signature timestamp is not a number: decimal digits only")
    if not _MAC.fullmatch(given):
        raise BadSignature("the signature must be 64 hexadecimal digits (HMAC-SHA256)")
    # The MAC is over the timestamp exactly as received, never over a re-formatted number.
    expected = hmac.new(secret.encode(), signed_t.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise BadSignature("the signature does not match the body")
    timestamp = int(signed_t)
    if abs(now - timestamp) > tolerance:
        raise BadSignature("the signature timestamp is outside the tolerance")
    return timestamp
