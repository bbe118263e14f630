import json
import logging

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
