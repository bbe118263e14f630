import json
import logging

import pytest
import structlog

from common.logging import configure_logging, redact_text, register_secret


def test_tokens_and_secrets_are_redacted(capsys):
    configure_logging("INFO", "json")
    register_secret("super-client-secret")
    log = structlog.get_logger("t")
    log.info(
        "token_refreshed",
        access_token="act.abc123!1234",
        note="sent rft.zzz!99 with super-client-secret",
        url="https://x.invalid/cb?code=abc*0!6&state=s1",
        nested={"refresh_token": "rft.q"},
        account_id="a1",
    )
    logging.getLogger("plain").warning("callback %s", "?code=xyz&state=abc")
    out = capsys.readouterr().err
    for secret in ("act.abc123", "rft.zzz", "super-client-secret", "abc*0!6", "rft.q", "xyz"):
        assert secret not in out
    first = json.loads(out.splitlines()[0])
    assert first["account_id"] == "a1" and first["access_token"] == "[redacted]"


def test_redact_text_keeps_ordinary_words():
    assert redact_text("published post p-1 for account a1") == "published post p-1 for account a1"


def test_error_codes_stay_readable_while_codes_are_redacted():
    from common.logging import redact_processor

    out = redact_processor(None, "info", {"error_code": "wrong_schema", "code": "abc*0!6", "auth_code": "x1"})
    assert out == {"error_code": "wrong_schema", "code": "[redacted]", "auth_code": "[redacted]"}


def test_a_token_nested_deeper_than_the_redactor_looks_is_still_hidden():
    from common.logging import redact_processor

    nested: dict = {"secret_sauce": "act.leaked-token-value!1234"}
    for _ in range(12):
        nested = {"wrapper": nested}
    assert "leaked-token-value" not in repr(redact_processor(None, "info", {"event": "x", "detail": nested}))


# #12.19: what the redactor must mask, as text in a message or under a key, and what it must keep.
_NONCE = "Zq3vN8bW1xYk7pLm2sRt5uVw9aBc4dEf6gHj0kLnOpQ"
_SIG = "5f2b4c8e9a0d1e3f5a7b9c0d2e4f6a8b0c1d3e5f7a9b1c3d5e7f9a0b2c4d6e8f"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"GET https://s3.local/media/a.mp4?X-Amz-Algorithm=AWS4&X-Amz-Signature={_SIG}", _SIG),
        (f"url=https://s3/b/k?x-amz-signature={_SIG}&X-Amz-Expires=60", _SIG),
        (f"Authorization: AWS4-HMAC-SHA256 Credential=AK/x, SignedHeaders=host, Signature={_SIG}", _SIG),
        ("body grant_type=authorization_code&code_verifier=Vv-9_secretverifier~value", "secretverifier"),
        ("connect to postgresql://svc:Db-Pa55word-x9@db.internal:5432/auth failed", "Db-Pa55word-x9"),
        ("kafka sasl://user:K4fka-pass@broker:9093", "K4fka-pass"),
        (f"Cookie: tt_connect={_NONCE}; other=1", _NONCE),
        (f"Set-Cookie: __Host-tt_connect={_NONCE}; Path=/; Secure", _NONCE),
    ],
)
def test_secret_shapes_in_text_are_masked(text: str, hidden: str) -> None:
    out = redact_text(text)
    assert hidden not in out and "[redacted]" in out


def test_secret_keys_are_masked() -> None:
    from common.logging import redact_processor

    event = {
        "browser_nonce": _NONCE,
        "nonce": _NONCE,
        "database_url": "postgresql://u:pw-secret-1@h/db",
        "s3_secret_access_key": "s3-secret-value-1",
        "token_keys": "k1:abc",
    }
    out = redact_processor(None, "info", dict(event))
    assert all(v == "[redacted]" for v in out.values()), out


def test_registered_dsn_password_s3_secret_and_key_material_are_masked() -> None:
    import base64
    import os

    from common.logging import register_dsn_password, register_key_material

    key = os.urandom(32)
    register_dsn_password("postgresql://svc:Pw%2Fwith-slash-77@h/db")
    register_secret("s3-secret-access-key-value-9")
    register_key_material([key])
    encoded = base64.urlsafe_b64encode(key).decode().rstrip("=")
    standard = base64.b64encode(key).decode()
    text = redact_text(f"pw Pw/with-slash-77 s3 s3-secret-access-key-value-9 key {encoded} std {standard}")
    for secret in ("Pw/with-slash-77", "s3-secret-access-key-value-9", encoded, standard):
        assert secret not in text


def test_ordinary_urls_and_words_stay_readable() -> None:
    text = (
        "GET https://open.tiktokapis.com/v2/post/publish/status/fetch/ for account acc-1 at db.internal:5432"
    )
    assert redact_text(text) == text
