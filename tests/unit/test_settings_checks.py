"""#12.18: the pure start-up checks on keys, API key, TikTok base URL and presign TTL (table tests)."""

from __future__ import annotations

import base64

import pytest

from common.cipher import generate_key
from common.errors import ConfigError
from common.settings_checks import (
    api_key_strength,
    bounded_presign_ttl,
    distinct_key_rings,
    https_unless_local,
    key_ring_entries,
)

K1, K2 = generate_key(), generate_key()
ZERO = base64.urlsafe_b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (f"a:{K1},a:{K2}", "X: key id 'a' appears twice"),
        (f"a:{K1[:10]}!{K1[11:]}", "X: key 'a' holds characters outside base64url"),
        (f"a:{K1[:10]}+{K1[11:]}", "X: key 'a' holds characters outside base64url"),  # standard alphabet
        (f"a:{K1[:10]}.{K1[11:]}", "X: key 'a' holds characters outside base64url"),
        (f"a:{ZERO}", "X: key 'a' is all zero bytes"),
        ("a:" + "A" * 43, "X: key 'a' is all zero bytes"),
        (f"a{K1}", "X: each entry must be key_id:base64key"),
        (" , ", "X holds no keys"),
    ],
)
def test_bad_key_rings_are_refused_naming_the_variable(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        key_ring_entries("X", spec)


def test_a_good_key_ring_parses_in_order() -> None:
    entries = key_ring_entries("X", f"a:{K1}, b:{K2}=")
    assert [kid for kid, _ in entries] == ["a", "b"]
    assert all(len(key) == 32 for _, key in entries)


@pytest.mark.parametrize(
    ("a", "b", "refused"),
    [(f"k1:{K1}", f"t1:{K1}", True), (f"k1:{K1},k2:{K2}", f"t1:{K2}", True), (f"k1:{K1}", f"t1:{K2}", False)],
)
def test_token_and_transport_rings_must_not_share_key_material(a: str, b: str, refused: bool) -> None:
    if refused:
        with pytest.raises(ConfigError, match="TOKEN_KEYS and TRANSPORT_KEYS must not share a key"):
            distinct_key_rings("TOKEN_KEYS", a, "TRANSPORT_KEYS", b)
    else:
        distinct_key_rings("TOKEN_KEYS", a, "TRANSPORT_KEYS", b)


@pytest.mark.parametrize(("value", "ok"), [("", False), ("x" * 23, False), ("x" * 24, True)])
def test_api_key_length(value: str, ok: bool) -> None:
    if ok:
        api_key_strength("API_KEY", value)
    else:
        with pytest.raises(ConfigError, match="API_KEY must be at least 24 characters"):
            api_key_strength("API_KEY", value)


@pytest.mark.parametrize(
    ("url", "allow_http", "ok"),
    [
        ("https://open.tiktokapis.com", False, True),
        ("http://open.tiktokapis.com", False, False),
        ("http://127.0.0.1:8080", False, True),
        ("http://[::1]:8080", False, True),
        ("http://localhost:8080", False, True),
        ("http://tiktok-sandbox:18080", False, False),
        ("http://tiktok-sandbox:18080", True, True),
        ("ftp://open.tiktokapis.com", True, False),
        ("https://", False, False),
        ("open.tiktokapis.com", False, False),
    ],
)
def test_tiktok_api_base_is_https_outside_local_mode(url: str, allow_http: bool, ok: bool) -> None:
    if ok:
        https_unless_local("TIKTOK_API_BASE", url, allow_http=allow_http)
    else:
        with pytest.raises(ConfigError, match="TIKTOK_API_BASE must be an https:// URL"):
            https_unless_local("TIKTOK_API_BASE", url, allow_http=allow_http)


@pytest.mark.parametrize(
    ("ttl", "ok"), [(0, False), (59, False), (60, True), (604800, True), (604801, False)]
)
def test_presign_ttl_is_bounded(ttl: int, ok: bool) -> None:
    if ok:
        bounded_presign_ttl("MEDIA_PRESIGN_TTL_S", ttl)
    else:
        with pytest.raises(ConfigError, match="MEDIA_PRESIGN_TTL_S must be between 60 and 604800"):
            bounded_presign_ttl("MEDIA_PRESIGN_TTL_S", ttl)
