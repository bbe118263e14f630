"""Checking the ``TikTok-Signature`` header of webhook POSTs (spec §8.4)."""

from __future__ import annotations

import hashlib
import hmac


class BadSignature(ValueError):
    pass


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
    try:
        timestamp = int(parts["t"])
    except ValueError:
        raise BadSignature("the signature timestamp is not a number") from None
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["s"].lower()):
        raise BadSignature("the signature does not match the body")
    if abs(now - timestamp) > tolerance:
        raise BadSignature("the signature timestamp is outside the tolerance")
    return timestamp
