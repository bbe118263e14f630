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
