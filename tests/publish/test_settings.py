"""Settings: read once from the environment, fail fast naming the variable, never show secrets."""

from __future__ import annotations

import pytest

from common.cipher import generate_key
from common.errors import ConfigError
from publish_service.settings import Settings

BASE = {
    "DATABASE_URL": "postgresql://u:db-password@h/db",
    "KAFKA_BOOTSTRAP_SERVERS": "k:9092",
    "TIKTOK_API_BASE": "https://open.tiktokapis.com",
    "TIKTOK_CLIENT_KEY": "ck",
    "TIKTOK_CLIENT_SECRET": "client-secret-value",
    "TRANSPORT_KEYS": f"k1:{generate_key()}",
    "S3_ALLOWED_BUCKETS": "media, other",
    "API_KEY": "api-key-value-0123456789abcdef",
}


def test_defaults_and_parsing() -> None:
    s = Settings.from_env(BASE)
    assert (s.http_host, s.http_port, s.workers, s.chunk_size) == ("127.0.0.1", 8082, 4, 10 * 1024 * 1024)
    assert s.s3_allowed_buckets == ("media", "other")
    assert s.topic("tiktok.post.status") == "tiktok.post.status"
    assert Settings.from_env({**BASE, "TOPIC_PREFIX": "dev."}).topic("x") == "dev.x"


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Settings.from_env(BASE))
    for secret in (
        "db-password",
        "client-secret-value",
        "api-key-value-0123456789abcdef",
        BASE["TRANSPORT_KEYS"],
    ):
        assert secret not in text


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"API_KEY": ""}, "API_KEY"),
        ({"PUBLISH_CHUNK_SIZE": str(4 * 1024 * 1024)}, "PUBLISH_CHUNK_SIZE"),
        ({"TRANSPORT_KEYS": "k1:short"}, "k1"),
        ({"PUBLISH_LEASE_S": "10", "TIKTOK_TIMEOUT_S": "30"}, "PUBLISH_LEASE_S"),
        ({"S3_ALLOWED_BUCKETS": " , "}, "S3_ALLOWED_BUCKETS"),
        # #12.18: each refused at start, naming the variable
        ({"API_KEY": "short-key"}, "API_KEY"),
        ({"TIKTOK_API_BASE": "http://open.tiktokapis.com"}, "TIKTOK_API_BASE"),
        ({"MEDIA_PRESIGN_TTL_S": str(30 * 24 * 3600)}, "MEDIA_PRESIGN_TTL_S"),
        ({"MEDIA_PRESIGN_TTL_S": "0"}, "MEDIA_PRESIGN_TTL_S"),
        ({"TRANSPORT_KEYS": f"k1:{generate_key()},k1:{generate_key()}"}, "TRANSPORT_KEYS.*twice"),
        ({"TRANSPORT_KEYS": "k1:" + "A" * 43}, "TRANSPORT_KEYS.*zero"),
    ],
)
def test_fails_fast_naming_the_problem(change: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env({**BASE, **change})
