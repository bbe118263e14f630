"""The signed hand-off to ``CONNECT_SUCCESS_URL`` (#12.13).

After a connect, the browser is sent to the upstream app with::

    account_id=<id>&mode=<direct|drafts_only>&expires=<unix seconds>&signature=<hex>

where ``signature = HMAC-SHA256(key, "v1|" + account_id + "|" + mode + "|" + expires)`` (hex). The app
checks the signature and that ``expires`` is in the future before it binds the account to its user;
an unsigned or altered ``account_id`` (an attacker's own account, a link from a mail) is refused.

The key is ``CONNECT_HANDOFF_KEY`` when set, else derived from ``API_KEY`` (which the upstream app
already holds to call the accounts API): ``HMAC-SHA256(key=API_KEY, msg="tiktok-pipeline connect
hand-off v1")``. The auth_service README shows the check in a few lines of Python.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from common.errors import InvalidInput

HANDOFF_TTL_S = 600
_EXPIRES = re.compile(r"[0-9]{1,12}")
DERIVATION_LABEL = b"tiktok-pipeline connect hand-off v1"


class HandoffInvalid(InvalidInput):
    code = "handoff_invalid"


def derive_key(api_key: str) -> bytes:
    return hmac.new(api_key.encode(), DERIVATION_LABEL, hashlib.sha256).digest()


def handoff_key(explicit: str | None, api_key: str) -> bytes:
    return explicit.encode() if explicit else derive_key(api_key)


def _mac(key: bytes, account_id: str, mode: str, expires: int) -> str:
    return hmac.new(key, f"v1|{account_id}|{mode}|{expires}".encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, account_id: str, mode: str, now: float, ttl_s: int = HANDOFF_TTL_S) -> dict[str, str]:
    """The query parameters to append to the success URL."""
    expires = int(now) + ttl_s
    return {
        "account_id": account_id,
        "mode": mode,
        "expires": str(expires),
        "signature": _mac(key, account_id, mode, expires),
    }


@dataclass(frozen=True)
class Handoff:
    account_id: str
    mode: str


def verify(key: bytes, params: Mapping[str, str], now: float) -> Handoff:
    """What the upstream app does (and /v1/connected): the account, or :class:`HandoffInvalid`."""
    account_id, mode = params.get("account_id", ""), params.get("mode", "")
    expires_text, given = params.get("expires", ""), params.get("signature", "")
    # ASCII digits, at most 12 ("١٢٣".isdigit() is true, and int() of 5000 digits raises).
    if not (account_id and mode and _EXPIRES.fullmatch(expires_text) and given):
        raise HandoffInvalid("the hand-off needs account_id, mode, expires and signature")
    expected = _mac(key, account_id, mode, int(expires_text))
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise HandoffInvalid("the hand-off signature does not match")
    if int(expires_text) <= now:
        raise HandoffInvalid("the hand-off has expired; connect again")
    return Handoff(account_id, mode)
