"""The OAuth ``state`` rules (DESIGN.md "Security"): 256 random bits, single use, 10 minutes, bound to
the browser that started the flow.

Only digests are stored: a database reader learns neither the state nor the browser cookie. The
browser binding is a separate random nonce in an HttpOnly cookie; the state row keeps its digest, so
a state copied into another browser (login CSRF, a leaked link) is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from common.errors import InvalidInput

STATE_BYTES = 32  # 256 bits
STATE_TTL = timedelta(minutes=10)


def new_secret_value() -> str:
    """256 random bits, URL-safe (for the state and the browser nonce)."""
    return secrets.token_urlsafe(STATE_BYTES)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class ConnectRefused(InvalidInput):
    """The callback cannot complete; ``title`` is what the error page says to a person."""

    code = "connect_refused"
    title = "The connection could not be completed"


class StateMissing(ConnectRefused):
    code = "state_missing"
    title = "The sign-in link is incomplete"


class StateUnknown(ConnectRefused):
    code = "state_invalid"
    title = "This sign-in link was not issued by us"


class StateReplayed(ConnectRefused):
    code = "state_used"
    title = "This sign-in link was already used"


class StateExpired(ConnectRefused):
    code = "state_expired"
    title = "This sign-in link has expired"


class StateWrongBrowser(ConnectRefused):
    code = "state_wrong_browser"
    title = "This sign-in was started in another browser"


class AuthorizationDenied(ConnectRefused):
    code = "access_denied"
    http_status = 403
    title = "Access was not granted"


@dataclass(frozen=True)
class StateRecord:
    state_hash: bytes
    browser_hash: bytes
    created_at: datetime
    expires_at: datetime
    consumed_before: bool
    """True when the row had been consumed before this callback (a replay)."""
    code_verifier_ct: str | None = None


def check_state(record: StateRecord | None, *, now: datetime, browser_nonce: str | None) -> StateRecord:
    """Accept ``record`` for this callback or raise the reason it is refused."""
    if record is None:
        raise StateUnknown("the state parameter does not match any sign-in we started")
    if record.consumed_before:
        raise StateReplayed("the state parameter was already used; start the connection again")
    if now >= record.expires_at:
        raise StateExpired("the sign-in took longer than 10 minutes; start the connection again")
    if browser_nonce is None or not hmac.compare_digest(digest(browser_nonce), record.browser_hash):
        raise StateWrongBrowser(
            "the sign-in was started in another browser (or its cookie was lost); start it again here"
        )
    return record
