import pytest

from common.tiktok.webhooks import BadSignature, sign, verify


def test_valid_signature_and_every_failure():
    body = b'{"event":"post.publish.complete"}'
    header = sign(body, "s3cret", 1_700_000_000)
    assert verify(header, body, "s3cret", now=1_700_000_100) == 1_700_000_000
    for bad_header, bad_body, secret, now, needle in [
        (None, body, "s3cret", 1_700_000_000, "missing"),
        ("t=1", body, "s3cret", 1_700_000_000, "t= and s="),
        (header, body + b" ", "s3cret", 1_700_000_000, "does not match"),
        (header, body, "other", 1_700_000_000, "does not match"),
        (header, body, "s3cret", 1_700_000_000 + 301, "tolerance"),
    ]:
        with pytest.raises(BadSignature, match=needle):
            verify(bad_header, bad_body, secret, now=now)


def _mac(body: bytes, secret: str, t_text: str) -> str:
    import hashlib
    import hmac

    return hmac.new(secret.encode(), t_text.encode() + b"." + body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("t=1,s=\u00e9", "64 hexadecimal"),  # compare_digest on non-ASCII raised TypeError (a 500)
        ("t=1700000000,s=" + "\u00e9" * 64, "64 hexadecimal"),
        ("t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,s=" + "0" * 64, "decimal digits"),
    ],
)
def test_malformed_signature_is_a_bad_signature(header, needle):
    with pytest.raises(BadSignature, match=needle):
        verify(header, b"{}", "s3cret", now=1_700_000_000)


@pytest.mark.parametrize("t_text", ["+1700000000", "01700000000", "1_700_000_000", " 1700000000"])
def test_the_mac_covers_the_timestamp_as_sent(t_text):
    """A genuine signature (over ``1700000000``) replayed under another spelling of the same number:
    ``int()`` read each of them as the signed timestamp, so they passed."""
    body = b'{"event":"post.publish.complete"}'
    header = f"t={t_text},s={_mac(body, 's3cret', '1700000000')}"
    with pytest.raises(BadSignature):
        verify(header, body, "s3cret", now=1_700_000_000)


@pytest.mark.parametrize("t_text", ["+1700000000", "1_700_000_000", " 1700000000"])
def test_a_timestamp_that_is_not_plain_digits_is_refused_even_when_signed(t_text):
    body = b"{}"
    header = f"t={t_text},s={_mac(body, 's3cret', t_text)}"
    with pytest.raises(BadSignature, match="decimal digits"):
        verify(header, body, "s3cret", now=1_700_000_000)
