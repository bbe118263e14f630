import pytest

from auth_service.settings import Settings
from common.cipher import generate_key
from common.errors import ConfigError


def env(**over):
    base = {
        "DATABASE_URL": "postgresql://u:p@h/db",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "TIKTOK_CLIENT_KEY": "ck",
        "TIKTOK_CLIENT_SECRET": "very-secret-value",
        "OAUTH_REDIRECT_URI": "https://auth.example/v1/oauth/callback",
        "CONNECT_SUCCESS_URL": "https://app.example/connected",
        "TOKEN_KEYS": f"k1:{generate_key()},k2:{generate_key()}",
        "TOKEN_ACTIVE_KEY_ID": "k1",
        "TRANSPORT_KEYS": f"t1:{generate_key()}",
        "API_KEY": "api-key-123456-abcdefghijklmnop",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_from_env_defaults_and_secrets_hidden():
    s = Settings.from_env(env())
    assert s.http_host == "127.0.0.1" and s.http_port == 8081
    assert s.tiktok_app_type == "web"
    assert s.token_keys.active_id == "k1"
    assert s.transport_keys.active_id == "t1"
    assert s.tiktok_scopes == (
        "user.info.basic",
        "video.upload",
        "video.publish",
        "video.list",
        "user.info.stats",
    )
    text = repr(s)
    assert "very-secret-value" not in text and "api-key-123456-abcdefghijklmnop" not in text


def test_fail_fast_on_missing_or_bad_values():
    with pytest.raises(ConfigError, match="TIKTOK_CLIENT_SECRET"):
        Settings.from_env(env(TIKTOK_CLIENT_SECRET=None))
    with pytest.raises(ConfigError, match="TIKTOK_APP_TYPE"):
        Settings.from_env(env(TIKTOK_APP_TYPE="mobile"))
    with pytest.raises(ConfigError, match="LEASE"):
        Settings.from_env(env(AUTH_REFRESH_LEASE_S="10", AUTH_REFRESH_CALL_TIMEOUT_S="15"))
    with pytest.raises(ConfigError):
        Settings.from_env(env(TOKEN_ACTIVE_KEY_ID="nope"))


def test_desktop_and_tuning():
    s = Settings.from_env(
        env(
            TIKTOK_APP_TYPE="desktop",
            AUTH_REFRESH_CONCURRENCY="7",
            TIKTOK_SCOPES="a,b",
            INSIGHTS_ENABLED="false",
        )
    )
    assert s.tiktok_app_type == "desktop"
    assert s.refresh.concurrency == 7
    assert s.tiktok_scopes == ("a", "b")


def test_insights_scopes_are_requested_unless_switched_off():
    assert Settings.from_env(env(INSIGHTS_ENABLED="false")).tiktok_scopes == (
        "user.info.basic",
        "video.upload",
        "video.publish",
    )
    assert Settings.from_env(env(TIKTOK_SCOPES="user.info.basic,video.list")).tiktok_scopes == (
        "user.info.basic",
        "video.list",
        "user.info.stats",
    )


def test_repr_never_shows_the_database_password() -> None:
    """#12.17: neither repr nor str of the settings (nor of anything they hold) shows the password."""
    s = Settings.from_env(env(DATABASE_URL="postgresql://svc:Db-Pa55word-x9@db.internal:5432/auth"))
    for text in (repr(s), str(s), repr(s.database_url), f"{s}"):
        assert "Db-Pa55word-x9" not in text


_KEY = generate_key()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # #12.18: every key-ring and security mistake is refused at start, naming the variable.
        ({"TOKEN_KEYS": f"k1:{generate_key()},k1:{generate_key()}"}, "TOKEN_KEYS: key id 'k1' appears twice"),
        ({"TRANSPORT_KEYS": f"t1:{generate_key()},t1:{generate_key()}"}, "TRANSPORT_KEYS: key id 't1'"),
        ({"TOKEN_KEYS": f"k1:{_KEY[:20]}*{_KEY[21:]}"}, "TOKEN_KEYS: key 'k1' holds characters outside"),
        ({"TOKEN_KEYS": f"k1:{_KEY[:20]} {_KEY[20:]}"}, "TOKEN_KEYS: key 'k1' holds characters outside"),
        ({"TOKEN_KEYS": "k1:" + "A" * 43, "TOKEN_ACTIVE_KEY_ID": None}, "TOKEN_KEYS: key 'k1' is all zero"),
        ({"TRANSPORT_KEYS": "t1:" + "A" * 43}, "TRANSPORT_KEYS: key 't1' is all zero"),
        (
            {"TOKEN_KEYS": f"k1:{_KEY}", "TOKEN_ACTIVE_KEY_ID": None, "TRANSPORT_KEYS": f"t1:{_KEY}"},
            "TOKEN_KEYS and TRANSPORT_KEYS must not share a key",
        ),
        ({"API_KEY": "short-api-key"}, "API_KEY must be at least 24"),
        ({"TIKTOK_API_BASE": "http://open.tiktokapis.com"}, "TIKTOK_API_BASE must be an https"),
        ({"TIKTOK_API_BASE": "ftp://open.tiktokapis.com"}, "TIKTOK_API_BASE must be an https"),
    ],
)
def test_unsafe_keys_and_urls_are_refused_naming_the_variable(change, named) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        Settings.from_env(env(**change))
    assert _KEY not in str(caught.value)  # the message names the problem, never the key


def test_http_api_base_is_accepted_in_local_mode() -> None:
    assert Settings.from_env(env(TIKTOK_API_BASE="http://127.0.0.1:9999")).tiktok_api_base.startswith("http:")
    s = Settings.from_env(env(TIKTOK_API_BASE="http://tiktok-sandbox:18080", TIKTOK_ALLOW_HTTP="true"))
    assert s.tiktok_api_base == "http://tiktok-sandbox:18080"
