"""Webhook POSTs: checking the ``TikTok-Signature`` header (spec §8.4) and reading the event (§8.2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any


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


# ---- reading a verified delivery (spec §8.2, §8.3) -----------------------------------------------

PUBLICLY_AVAILABLE = "post.publish.publicly_available"
NO_LONGER_PUBLICLY_AVAILABLE = "post.publish.no_longer_publicly_available"

# TikTok documents `no_longer_publicaly_available` and deliveries have used both spellings of both
# events; each is read as one canonical name.
_EVENT_SPELLINGS = {
    "post.publish.publicaly_available": PUBLICLY_AVAILABLE,
    "post.publish.no_longer_publicaly_available": NO_LONGER_PUBLICLY_AVAILABLE,
}


class BadEvent(ValueError):
    pass


def canonical_event(name: str) -> str:
    """The event's name with ``publicly`` spelt one way, whichever spelling the delivery used."""
    return _EVENT_SPELLINGS.get(name, name)


def content_post_id(content: dict[str, Any]) -> str | None:
    """The public post id of an event's content, as a string (ids exceed 2**53), under any key used."""
    value = content.get("post_id")
    for spelling in ("publicaly_available_post_id", "publicly_available_post_id"):
        if value is None:
            value = content.get(spelling)
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None or isinstance(value, bool) else str(value)


@dataclass(frozen=True)
class WebhookEvent:
    """One delivery: ``event`` canonical (``publicly``), ``content`` parsed from its JSON string."""

    event: str
    client_key: str
    user_openid: str
    create_time: int | None
    content: dict[str, Any]

    @property
    def publish_id(self) -> str | None:
        value = self.content.get("publish_id")
        return str(value) if value is not None else None

    @property
    def post_id(self) -> str | None:
        return content_post_id(self.content)


def parse_event(body: bytes) -> WebhookEvent:
    """Read a delivery; optional keys may be absent, and ``content`` may be a string or an object."""
    try:
        data = json.loads(body)
    except ValueError:
        raise BadEvent("the webhook body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise BadEvent("the webhook body has no event name")
    content: Any = data.get("content") or {}
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            raise BadEvent("the webhook content is not JSON") from None
    if not isinstance(content, dict):
        raise BadEvent("the webhook content is not an object")
    event = str(data["event"])
    raw_time = data.get("create_time")
    return WebhookEvent(
        event=canonical_event(event),
        client_key=str(data.get("client_key") or ""),
        user_openid=str(data.get("user_openid") or ""),
        create_time=raw_time if isinstance(raw_time, int) and not isinstance(raw_time, bool) else None,
        content=content,
    )
