"""The hostile-input corpus for the state topics the services read in full or consume: what a broken
or hostile producer can put on ``tiktok.accounts``, ``tiktok.access-tokens`` and
``tiktok.token.refresh-requested``, and the code the reader must name when it skips the record.

A state record never stops its reader: publish_service logs ``state_event_bad`` (and counts it,
``state_event_bad{topic,code}``), auth_service logs ``refresh_request_invalid``; the records behind
it are applied (the valid post sent behind the whole corpus must be published).

Each case is sent on its own key (``hostile-state-<id>``), so it never touches the real account.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.cipher import KeyRing, TokenCipher, transport_purpose
from common.kafka import TOPIC_ACCESS_TOKENS, TOPIC_ACCOUNTS, TOPIC_TOKEN_REFRESH_REQUESTED

OCCURRED_AT = "2026-11-22T10:00:00Z"
DEEP = b'{"type": "x", "data": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
OVER_INT64 = 2**63
YEAR_10000_IN_UTC = "9999-12-31T23:59:59-14:00"


@dataclass(frozen=True)
class StateCase:
    id: str
    topic: str
    build: Callable[[str, str], bytes]
    """(the record's key, the pipeline's TRANSPORT_KEYS) -> the record's value."""
    code: str
    notes: str = ""

    @property
    def key(self) -> str:
        return f"hostile-state-{self.id}"

    @property
    def service(self) -> str:
        return "auth_service" if self.topic == TOPIC_TOKEN_REFRESH_REQUESTED else "publish_service"


def _envelope(event_type: str, data: Any) -> bytes:
    return json.dumps(
        {
            "type": event_type,
            "version": 1,
            "event_id": str(uuid.uuid4()),
            "occurred_at": OCCURRED_AT,
            "data": data,
        }
    ).encode()


def _token(**fields: Any) -> Callable[[str, str], bytes]:
    def build(key: str, _keys: str) -> bytes:
        data = {
            "account_id": key,
            "open_id": "o",
            "scopes": ["video.publish"],
            "token_version": 1,
            "expires_at": "2026-11-23T10:00:00Z",
            "ciphertext": "v1.unknown.AAAA",
            **fields,
        }
        return _envelope("tiktok.access_token.issued", data)

    return build


def _account(**fields: Any) -> Callable[[str, str], bytes]:
    def build(key: str, _keys: str) -> bytes:
        data = {"account_id": key, "open_id": "o", "status": "connected", **fields}
        return _envelope("tiktok.account.connected", data)

    return build


def _refresh(**fields: Any) -> Callable[[str, str], bytes]:
    def build(key: str, _keys: str) -> bytes:
        return _envelope("tiktok.token.refresh_requested", {"account_id": key, "reason": "x", **fields})

    return build


def _replayed_token(key: str, keys: str) -> bytes:
    """A genuine token record sealed for version 1, replayed with its version rewritten to 99."""
    sealed = TokenCipher(KeyRing.parse(keys)).encrypt("tok", account_id=key, purpose=transport_purpose(1))
    return _token(token_version=99, ciphertext=sealed)(key, keys)


def _raw(value: bytes) -> Callable[[str, str], bytes]:
    return lambda _key, _keys: value


STATE_CASES = [
    StateCase("accounts_too_deep", TOPIC_ACCOUNTS, _raw(DEEP), "too_deep"),
    StateCase("accounts_nul_account_id", TOPIC_ACCOUNTS, _account(account_id="acc\x00"), "wrong_schema"),
    StateCase(
        "accounts_version_over_int64", TOPIC_ACCOUNTS, _account(token_version=OVER_INT64), "wrong_schema"
    ),
    StateCase(
        "accounts_expiry_year_10000_in_utc",
        TOPIC_ACCOUNTS,
        _account(access_expires_at=YEAR_10000_IN_UTC),
        "wrong_schema",
    ),
    StateCase("tokens_not_json", TOPIC_ACCESS_TOKENS, _raw(b"{not json"), "not_json"),
    StateCase(
        "tokens_version_over_int64", TOPIC_ACCESS_TOKENS, _token(token_version=OVER_INT64), "wrong_schema"
    ),
    StateCase(
        "tokens_expiry_year_10000_in_utc",
        TOPIC_ACCESS_TOKENS,
        _token(expires_at=YEAR_10000_IN_UTC),
        "wrong_schema",
    ),
    StateCase("tokens_negative_version", TOPIC_ACCESS_TOKENS, _token(token_version=-1), "wrong_schema"),
    StateCase(
        "tokens_replayed_with_rewritten_version",
        TOPIC_ACCESS_TOKENS,
        _replayed_token,
        "decryption_failed",
        "the version is in the ciphertext's associated data",
    ),
    StateCase("refresh_too_deep", TOPIC_TOKEN_REFRESH_REQUESTED, _raw(DEEP), "too_deep"),
    StateCase(
        "refresh_nul_account_id", TOPIC_TOKEN_REFRESH_REQUESTED, _refresh(account_id="a\x00"), "wrong_schema"
    ),
    StateCase(
        "refresh_seen_version_over_int64",
        TOPIC_TOKEN_REFRESH_REQUESTED,
        _refresh(seen_token_version=OVER_INT64),
        "wrong_schema",
        "asyncpg refused it and the loop retried it for ever",
    ),
]
