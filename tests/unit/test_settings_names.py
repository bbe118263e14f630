"""Settings read the same way in both services: one name per thing, the old auth names still read
(for one release) with a ``setting_renamed`` warning, and the new name winning when both are set."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from auth_service.settings import Settings as AuthSettings
from common.cipher import KeyRing, generate_key
from common.settings import Secret
from publish_service.settings import Settings as PublishSettings

TRANSPORT = f"t1:{generate_key()}"
COMMON = {
    "DATABASE_URL": "postgresql://u:db-password@h/db",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "TIKTOK_CLIENT_KEY": "ck",
    "TIKTOK_CLIENT_SECRET": "client-secret-value",
    "TRANSPORT_KEYS": TRANSPORT,
    "TRANSPORT_ACTIVE_KEY_ID": "t1",
    "API_KEY": "api-key-value-long-enough-1234",
}
AUTH = {
    **COMMON,
    "OAUTH_REDIRECT_URI": "https://auth.example/v1/oauth/callback",
    "CONNECT_SUCCESS_URL": "https://app.example/connected",
    "TOKEN_KEYS": f"k1:{generate_key()}",
}
PUBLISH = {**COMMON, "S3_ALLOWED_BUCKETS": "media"}
SERVICES: list[tuple[Any, dict[str, str]]] = [(AuthSettings, AUTH), (PublishSettings, PUBLISH)]


@pytest.mark.parametrize(("settings", "base"), SERVICES, ids=["auth", "publish"])
def test_the_same_names_mean_the_same_things(settings: Any, base: dict[str, str]) -> None:
    with capture_logs() as logs:
        s = settings.from_env({**base, "INSTANCE_ID": "replica-7", "SHUTDOWN_DEADLINE_S": "12.5"})
    assert s.instance_id == "replica-7" and s.shutdown_deadline_s == 12.5
    assert not [e for e in logs if e["event"].startswith("setting_renamed")]
    assert s.tiktok_api_base == "https://open.tiktokapis.com"
    # Every secret is a Secret; the key ring is parsed at start and shows only its ids.
    for secret in (s.database_url, s.tiktok_client_secret, s.api_key):
        assert isinstance(secret, Secret)
    assert isinstance(s.transport_keys, KeyRing) and s.transport_keys.active_id == "t1"
    text = repr(s)
    for value in ("db-password", "client-secret-value", "api-key-value", TRANSPORT.split(":")[1]):
        assert value not in text


@pytest.mark.parametrize(
    ("old", "new", "value", "field"),
    [
        ("AUTH_INSTANCE_ID", "INSTANCE_ID", "old-replica", "instance_id"),
        ("AUTH_SHUTDOWN_DEADLINE_S", "SHUTDOWN_DEADLINE_S", "7", "shutdown_deadline_s"),
    ],
)
def test_an_old_auth_name_still_works_for_one_release_with_a_warning(
    old: str, new: str, value: str, field: str
) -> None:
    with capture_logs() as logs:
        s = AuthSettings.from_env({**AUTH, old: value})
    assert str(getattr(s, field)).removesuffix(".0") == value
    warnings = [e for e in logs if e["event"] == "setting_renamed"]
    assert [(e["old"], e["new"]) for e in warnings] == [(old, new)]
    with capture_logs() as logs:
        s = AuthSettings.from_env({**AUTH, old: value, new: "9"})
    assert str(getattr(s, field)).removesuffix(".0") == "9"  # the new name wins
    renamed = [e["event"] for e in logs if e["event"].startswith("setting_renamed")]
    assert renamed == ["setting_renamed_ignored"]
