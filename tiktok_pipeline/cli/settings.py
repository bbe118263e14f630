"""What the CLI reads from the environment: one table, used by the settings and by ``--help``."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError
from common.s3 import ObjectStore
from common.settings import EnvReader


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str | None
    meaning: str

    def describe(self) -> str:
        default = f" (default {self.default or '(empty)'})" if self.default is not None else ""
        return f"{self.name}{default}: {self.meaning}"


ENV_VARS: dict[str, EnvVar] = {
    v.name: v
    for v in (
        EnvVar("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092", "Kafka brokers, host:port[,host:port]"),
        EnvVar("TOPIC_PREFIX", "", "prefix of every topic name"),
        EnvVar("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
        EnvVar("KAFKA_SASL_MECHANISM", None, "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL protocols)"),
        EnvVar("KAFKA_SASL_USERNAME", None, "the Kafka user (SASL protocols)"),
        EnvVar("KAFKA_SASL_PASSWORD", None, "its password (SASL protocols; a secret, never printed)"),
        EnvVar("KAFKA_SSL_CAFILE", None, "CA file the brokers are checked against (default: the system CAs)"),
        EnvVar("KAFKA_SSL_CERTFILE", None, "client certificate, for mutual TLS (with KAFKA_SSL_KEYFILE)"),
        EnvVar("KAFKA_SSL_KEYFILE", None, "its private key, for mutual TLS"),
        EnvVar("AUTH_SERVICE_URL", "http://127.0.0.1:8081", "auth_service's base URL"),
        EnvVar("API_KEY", None, "auth_service's API key (bearer token) for the account commands"),
        EnvVar("S3_ENDPOINT_URL", None, "object storage endpoint, for uploading local files"),
        EnvVar("S3_ACCESS_KEY_ID", None, "object storage access key"),
        EnvVar("S3_SECRET_ACCESS_KEY", None, "object storage secret key"),
        EnvVar("S3_REGION", "us-east-1", "object storage region"),
        EnvVar("S3_BUCKET", "media", "bucket that local files are uploaded to"),
        EnvVar("DATABASE_URL", None, "PostgreSQL URL (migrate, rotate-keys: read by the services' commands)"),
        EnvVar("TOKEN_KEYS", None, "token key ring, id:key[,id:key] (rotate-keys, read by auth_service)"),
        EnvVar(
            "TOKEN_ACTIVE_KEY_ID", None, "the key id to encrypt under (rotate-keys, read by auth_service)"
        ),
    )
}

KAFKA_VARS = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "TOPIC_PREFIX",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CAFILE",
    "KAFKA_SSL_CERTFILE",
    "KAFKA_SSL_KEYFILE",
)
AUTH_VARS = ("AUTH_SERVICE_URL", "API_KEY")
S3_VARS = ("S3_ENDPOINT_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_REGION", "S3_BUCKET")


def env_help(names: tuple[str, ...]) -> str:
    """The epilog of a command's ``--help``: the environment variables it reads, with defaults."""
    return "environment variables read:\n" + "\n".join(f"  {ENV_VARS[n].describe()}" for n in names)


def _default(name: str) -> str:
    default = ENV_VARS[name].default
    assert default is not None  # noqa: S101 - the table above gives these a default
    return default


@dataclass(frozen=True)
class CliSettings:
    kafka: str
    topic_prefix: str
    auth_url: str
    api_key: str | None
    s3_endpoint: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_region: str
    s3_bucket: str

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> CliSettings:
        env = env or EnvReader()
        return cls(
            kafka=env.string("KAFKA_BOOTSTRAP_SERVERS", _default("KAFKA_BOOTSTRAP_SERVERS")),
            topic_prefix=env.optional("TOPIC_PREFIX") or "",
            auth_url=env.string("AUTH_SERVICE_URL", _default("AUTH_SERVICE_URL")).rstrip("/"),
            api_key=env.optional("API_KEY"),
            s3_endpoint=env.optional("S3_ENDPOINT_URL"),
            s3_access_key=env.optional("S3_ACCESS_KEY_ID"),
            s3_secret_key=env.optional("S3_SECRET_ACCESS_KEY"),
            s3_region=env.string("S3_REGION", _default("S3_REGION")),
            s3_bucket=env.string("S3_BUCKET", _default("S3_BUCKET")),
        )

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def require_api_key(self) -> str:
        if not self.api_key:
            raise ConfigError("API_KEY is not set: the account commands need auth_service's API key")
        return self.api_key

    def object_store(self) -> ObjectStore:
        if not (self.s3_endpoint and self.s3_access_key and self.s3_secret_key):
            raise ConfigError(
                "uploading a local file needs S3_ENDPOINT_URL, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
            )
        return ObjectStore(
            endpoint_url=self.s3_endpoint,
            access_key_id=self.s3_access_key,
            secret_access_key=self.s3_secret_key,
            region=self.s3_region,
        )
