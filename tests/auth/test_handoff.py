"""#12.13: the hand-off to CONNECT_SUCCESS_URL is signed with an expiry (pure functions, table tests)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from auth_service.domain.handoff import HandoffInvalid, derive_key, handoff_key, sign, verify

KEY = derive_key("api-key-0123456789abcdefghij")
NOW = 1_800_000_000.0


def test_a_signed_hand_off_verifies_within_its_expiry() -> None:
    params = sign(KEY, "acc_1", "direct", NOW)
    assert verify(KEY, params, NOW + 599).account_id == "acc_1"


def test_the_documented_derivation_and_mac_are_what_the_code_does() -> None:
    """The README's snippet, verbatim in spirit: an app can check the hand-off with hmac alone."""
    api_key = "api-key-0123456789abcdefghij"
    key = hmac.new(api_key.encode(), b"tiktok-pipeline connect hand-off v1", hashlib.sha256).digest()
    assert key == handoff_key(None, api_key) and handoff_key("explicit", api_key) == b"explicit"
    p = sign(key, "acc_9", "drafts_only", NOW)
    message = f"v1|{p['account_id']}|{p['mode']}|{p['expires']}".encode()
    assert hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), p["signature"])


def _tampered(**change: str) -> dict[str, str]:
    return {**sign(KEY, "acc_1", "direct", NOW), **change}


@pytest.mark.parametrize(
    ("params", "now", "reason"),
    [
        ({"account_id": "acc_1"}, NOW, "needs account_id"),  # the old unsigned hand-off
        (_tampered(account_id="acc_attacker"), NOW, "does not match"),
        (_tampered(mode="direct_x"), NOW, "does not match"),
        (_tampered(expires=str(int(NOW) + 10**6)), NOW, "does not match"),
        (_tampered(signature="0" * 64), NOW, "does not match"),
        (_tampered(signature="é" * 64), NOW, "does not match"),
        (_tampered(expires="-5"), NOW, "needs account_id"),
        (_tampered(expires="9" * 5000), NOW, "needs account_id"),  # int() would raise: a 500
        (_tampered(expires="\u0661\u0662\u0663"), NOW, "needs account_id"),  # Arabic-Indic digits
        (sign(KEY, "acc_1", "direct", NOW), NOW + 600, "expired"),
        (sign(derive_key("another-api-key-000000000000"), "acc_1", "direct", NOW), NOW, "does not match"),
    ],
)
def test_forged_altered_or_expired_hand_offs_are_refused(
    params: dict[str, str], now: float, reason: str
) -> None:
    with pytest.raises(HandoffInvalid, match=reason):
        verify(KEY, params, now)
