"""Generators for TikTok-looking identifiers (§6.1 log_id, §2.3 tokens, §9.2 publish ids)."""

from __future__ import annotations

import itertools
import secrets
import string
import uuid
from datetime import UTC, datetime

_B62 = string.ascii_letters + string.digits


def _b62(n: int) -> str:
    return "".join(secrets.choice(_B62) for _ in range(n))


LOG_ID_LENGTH = 34
PUBLISH_NUMBER_DIGITS = 19


def log_id(now: float) -> str:
    """`YYYYMMDDhhmmss` + 20 upper hex: 34 characters, like every captured real one (§6.1)."""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d%H%M%S")
    return stamp + secrets.token_hex(10).upper()


def access_token() -> str:
    return f"act.{_b62(52)}!{secrets.randbelow(10_000):04d}"


def refresh_token() -> str:
    return f"rft.{_b62(52)}!{secrets.randbelow(10_000):04d}"


def client_token() -> str:
    return f"clt.{_b62(52)}!{secrets.randbelow(10_000):04d}"


def auth_code() -> str:
    # Real codes carry `*` and `!`, which clients must URL-decode before the exchange (§2.2).
    return f"{_b62(40)}*0!{secrets.randbelow(10_000):04d}"


def open_id() -> str:
    return str(uuid.uuid4())


def secret(n: int = 32) -> str:
    return _b62(n)


class Sequences:
    """Monotonic numbers for publish ids and 19-digit post ids, one instance per sandbox."""

    def __init__(self) -> None:
        # 19-digit numbers, like the publish ids TikTok has been seen to issue.
        self._publish = itertools.count(7_400_000_000_000_000_000 + secrets.randbelow(10**15))
        self._post = itertools.count(7_300_000_000_000_000_000 + secrets.randbelow(10**15))

    def publish_id(self, prefix: str) -> str:
        return f"{prefix}.{next(self._publish)}"

    def post_id(self) -> int:
        return next(self._post)
