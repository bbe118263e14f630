import pytest

from common.cipher import DecryptionFailed, KeyRing, TokenCipher, generate_key
from common.errors import ConfigError


def test_round_trip_and_binding_to_account_and_purpose():
    cipher = TokenCipher(KeyRing.parse(f"k1:{generate_key()}"))
    sealed = cipher.encrypt("act.secret!1234", account_id="a1", purpose="access_token")
    assert "secret" not in sealed and sealed.startswith("v1.k1.")
    assert cipher.decrypt(sealed, account_id="a1", purpose="access_token") == "act.secret!1234"
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(sealed, account_id="a2", purpose="access_token")
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(sealed, account_id="a1", purpose="refresh_token")


def test_rotation_to_a_new_key():
    k1, k2 = generate_key(), generate_key()
    old = TokenCipher(KeyRing.parse(f"k1:{k1}"))
    sealed = old.encrypt("rft.x!1", account_id="a", purpose="refresh_token")
    new = TokenCipher(KeyRing.parse(f"k1:{k1},k2:{k2}", "k2"))
    assert new.needs_rotation(sealed)
    rotated = new.rotate(sealed, account_id="a", purpose="refresh_token")
    assert TokenCipher.key_id_of(rotated) == "k2"
    assert (
        TokenCipher(KeyRing.parse(f"k2:{k2}")).decrypt(rotated, account_id="a", purpose="refresh_token")
        == "rft.x!1"
    )


def test_bad_key_rings_are_named():
    with pytest.raises(ConfigError, match="32 bytes"):
        KeyRing.parse("k1:AAAA")
    with pytest.raises(ConfigError, match="not in the key ring"):
        KeyRing.parse(f"k1:{generate_key()}", "k9")
    key = generate_key()
    assert key not in repr(KeyRing.parse(f"k1:{key}"))
