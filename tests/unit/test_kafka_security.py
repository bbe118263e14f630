"""The Kafka client security settings: every missing or contradictory combination names its variable."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.kafka import TopicSpec
from common.kafka_health import public_reason
from common.kafka_provision import TopicChange, plan_topic
from common.kafka_security import SaslMechanism, SecurityProtocol, parse_security

SASL = {
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "publish-service",
    "KAFKA_SASL_PASSWORD": "hunter2-secret",
}


@pytest.fixture
def ca_file(tmp_path: Path) -> str:
    # A real CA certificate, so the ssl context can load it (made once by the secured stack's recipe).
    import subprocess

    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-new",
            "-key",
            str(key),
            "-subj",
            "/CN=test CA",
            "-days",
            "1",
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "PLAIN",
                "KAFKA_SASL_USERNAME": "u",
            },
            "KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_MECHANISM": "PLAIN",
                "KAFKA_SASL_PASSWORD": "p",
            },
            "KAFKA_SASL_USERNAME",
        ),
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME"),  # SASL settings with PLAINTEXT
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", **SASL}, "KAFKA_SASL_MECHANISM"),
        ({"KAFKA_SSL_CAFILE": "/etc/ssl/ca.pem"}, "KAFKA_SSL_CAFILE"),  # TLS settings with PLAINTEXT
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL, "KAFKA_SSL_CAFILE": "/x"}, "KAFKA_SSL_CAFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/x.pem"}, "KAFKA_SSL_KEYFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": "/x.key"}, "KAFKA_SSL_CERTFILE"),
        ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "KAFKA_SSL_CAFILE"),
    ],
)
def test_a_missing_or_contradictory_setting_is_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_security(env)
    assert names in excinfo.value.message
    assert "hunter2-secret" not in excinfo.value.message


@pytest.mark.parametrize(
    ("env", "protocol", "mechanism"),
    [
        ({}, SecurityProtocol.PLAINTEXT, None),
        ({"KAFKA_SECURITY_PROTOCOL": "ssl"}, SecurityProtocol.SSL, None),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", **SASL},
            SecurityProtocol.SASL_PLAINTEXT,
            SaslMechanism.SCRAM_SHA_512,
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "KAFKA_SASL_MECHANISM": "plain"},
            SecurityProtocol.SASL_SSL,
            SaslMechanism.PLAIN,
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256"},
            SecurityProtocol.SASL_SSL,
            SaslMechanism.SCRAM_SHA_256,
        ),
    ],
)
def test_valid_combinations(
    env: dict[str, str], protocol: SecurityProtocol, mechanism: SaslMechanism | None
) -> None:
    security = parse_security(env)
    assert security.protocol is protocol
    assert security.sasl_mechanism is mechanism


def test_the_password_is_masked_in_repr_and_reaches_only_the_client_kwargs(ca_file: str) -> None:
    security = parse_security({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", **SASL, "KAFKA_SSL_CAFILE": ca_file})
    assert "hunter2-secret" not in repr(security)
    assert "hunter2-secret" not in str(security)
    kwargs = security.client_kwargs()
    assert kwargs["sasl_plain_password"] == "hunter2-secret"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    assert parse_security({}).client_kwargs() == {"security_protocol": "PLAINTEXT"}


SPEC = TopicSpec("t", 3, 3, {"retention.ms": "100", "min.insync.replicas": "2"})


@pytest.mark.parametrize(
    ("exists", "current", "action", "changes"),
    [
        (False, {}, TopicChange.CREATED, dict(SPEC.config)),
        (
            True,
            {"retention.ms": "100", "min.insync.replicas": "2", "segment.ms": "5"},
            TopicChange.UNCHANGED,
            {},
        ),
        # An operator's own keys (segment.ms, max.message.bytes) are never in the changes.
        (
            True,
            {"retention.ms": "999", "min.insync.replicas": "2", "max.message.bytes": "7"},
            TopicChange.UPDATED,
            {"retention.ms": "100"},
        ),
        (True, {}, TopicChange.UPDATED, dict(SPEC.config)),
    ],
)
def test_plan_topic_sets_only_the_owned_keys_that_differ(
    exists: bool, current: dict[str, str], action: TopicChange, changes: dict[str, str]
) -> None:
    plan = plan_topic(SPEC, exists, current)
    assert plan.action is action
    assert dict(plan.changes) == changes


def test_a_process_with_a_contradictory_combination_stops_at_start_naming_the_variable() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_USERNAME": "someone"}
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_pipeline.cli", "create-topics"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 4  # a configuration error
    assert "KAFKA_SASL_USERNAME" in " ".join((result.stdout + result.stderr).split())


@pytest.mark.parametrize(
    ("problem", "public"),
    [
        (
            "Kafka authentication failed as User:auth-service (check KAFKA_SASL_USERNAME/"
            "KAFKA_SASL_PASSWORD): KafkaError: SaslAuthenticationFailed host 10.1.2.3",
            "Kafka authentication failed as User:auth-service (check KAFKA_SASL_USERNAME/"
            "KAFKA_SASL_PASSWORD)",
        ),
        (
            "Kafka TLS handshake failed (check KAFKA_SSL_CAFILE and the broker certificate): SSLError: x",
            "Kafka TLS handshake failed (check KAFKA_SSL_CAFILE and the broker certificate)",
        ),
        (
            "Kafka unavailable: OSError: [Errno 111] Connect call failed ('10.0.0.1', 9092)",
            "Kafka unavailable",
        ),
        (
            "Kafka topic missing (or not visible to this user): p.tiktok.accounts; create it with "
            "`tiktok-pipeline create-topics` or set KAFKA_MANAGE_TOPICS=true",
            "Kafka topic missing (or not visible to this user): p.tiktok.accounts; create it with "
            "`tiktok-pipeline create-topics` or set KAFKA_MANAGE_TOPICS=true",
        ),
        (
            "topics not ensured after 3 tries, last: KafkaError: broker at 10.0.0.1",
            "topics not ensured after 3 tries",
        ),
    ],
)
def test_readyz_shows_the_kind_of_kafka_failure_never_the_exception_text(problem: str, public: str) -> None:
    assert public_reason(problem) == public
