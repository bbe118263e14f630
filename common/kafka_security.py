"""How every Kafka client of the project authenticates and encrypts: one set of settings.

``KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), ``KAFKA_SASL_MECHANISM``
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD`` (a secret),
``KAFKA_SSL_CAFILE`` and, for mutual TLS, ``KAFKA_SSL_CERTFILE`` with ``KAFKA_SSL_KEYFILE``.

:func:`parse_security` is the pure decision (a mapping in, settings or a ``ConfigError`` naming the
variable out); :func:`security_from_env` reads the process environment once, so a bad combination
stops the process at start. :meth:`KafkaSecurity.client_kwargs` gives the aiokafka keyword arguments,
with an ``ssl.SSLContext`` from the standard library (certificate and host name verified).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any, TypeVar

from common.errors import ConfigError
from common.settings import EnvReader, Secret


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


E = TypeVar("E", bound=StrEnum)


def _choice(enum: type[E], name: str, value: str) -> E:
    try:
        return enum(value.upper())
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise ConfigError(f"environment variable {name} must be one of {allowed}, got {value!r}") from None


@dataclass(frozen=True)
class KafkaSecurity:
    """Validated client security settings; ``repr`` never shows the password."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @property
    def principal(self) -> str:
        """Who the broker will see, for log lines and error messages (never the password)."""
        if self.sasl_username:
            return f"User:{self.sasl_username}"
        if self.ssl_certfile:
            return f"certificate {self.ssl_certfile}"
        return "ANONYMOUS"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the CA file (or the system's CAs), host name verification on, mTLS if set."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_cafile)
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/``AIOKafkaAdminClient``."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol.value}
        if self.protocol.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.protocol.uses_sasl and self.sasl_mechanism is not None and self.sasl_password is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism.value
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get()
        return kwargs


def parse_security(environ: Mapping[str, str]) -> KafkaSecurity:
    """The security settings in ``environ``, or a ``ConfigError`` naming the variable that is wrong.

    Rules: SASL protocols need a mechanism, a user name and a password, and the other protocols must
    not carry them; the TLS files only with SSL/SASL_SSL; a certificate and its key come together; the
    files must be readable.
    """
    env = EnvReader(environ)
    protocol = _choice(
        SecurityProtocol, "KAFKA_SECURITY_PROTOCOL", env.string("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    )
    raw_mechanism = env.optional("KAFKA_SASL_MECHANISM")
    username = env.optional("KAFKA_SASL_USERNAME")
    password = env.optional("KAFKA_SASL_PASSWORD")
    cafile = env.optional("KAFKA_SSL_CAFILE")
    certfile = env.optional("KAFKA_SSL_CERTFILE")
    keyfile = env.optional("KAFKA_SSL_KEYFILE")

    mechanism: SaslMechanism | None = None
    if protocol.uses_sasl:
        if raw_mechanism is None:
            raise ConfigError(
                "environment variable KAFKA_SASL_MECHANISM is required with "
                f"KAFKA_SECURITY_PROTOCOL={protocol}"
            )
        mechanism = _choice(SaslMechanism, "KAFKA_SASL_MECHANISM", raw_mechanism)
        for name, value in (("KAFKA_SASL_USERNAME", username), ("KAFKA_SASL_PASSWORD", password)):
            if value is None:
                raise ConfigError(
                    f"environment variable {name} is required with KAFKA_SECURITY_PROTOCOL={protocol}"
                )
    else:
        for name, value in (
            ("KAFKA_SASL_MECHANISM", raw_mechanism),
            ("KAFKA_SASL_USERNAME", username),
            ("KAFKA_SASL_PASSWORD", password),
        ):
            if value is not None:
                raise ConfigError(
                    f"environment variable {name} is set but KAFKA_SECURITY_PROTOCOL={protocol} "
                    "does not use SASL (use SASL_SSL or SASL_PLAINTEXT)"
                )
    if not protocol.uses_tls:
        for name, value in (
            ("KAFKA_SSL_CAFILE", cafile),
            ("KAFKA_SSL_CERTFILE", certfile),
            ("KAFKA_SSL_KEYFILE", keyfile),
        ):
            if value is not None:
                raise ConfigError(
                    f"environment variable {name} is set but KAFKA_SECURITY_PROTOCOL={protocol} "
                    "does not use TLS (use SSL or SASL_SSL)"
                )
    if (certfile is None) != (keyfile is None):
        missing = "KAFKA_SSL_KEYFILE" if keyfile is None else "KAFKA_SSL_CERTFILE"
        raise ConfigError(
            f"environment variable {missing} is required: "
            "mutual TLS needs both KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
        )
    for name, path in (
        ("KAFKA_SSL_CAFILE", cafile),
        ("KAFKA_SSL_CERTFILE", certfile),
        ("KAFKA_SSL_KEYFILE", keyfile),
    ):
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"environment variable {name} names {path!r}, which is not a readable file")
    return KafkaSecurity(
        protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=username,
        sasl_password=Secret(password) if password is not None else None,
        ssl_cafile=cafile,
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )


@cache
def security_from_env() -> KafkaSecurity:
    """This process's settings, read from ``os.environ`` once (a ``ConfigError`` stops the start)."""
    return parse_security(os.environ)


def client_security(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments of ``security``, or of this process's environment when ``None``."""
    return (security if security is not None else security_from_env()).client_kwargs()


def security_problem(exc: BaseException) -> str | None:
    """``"authentication"`` or ``"TLS"`` when ``exc`` (or its cause chain) is one, else ``None``.

    Used to name the reason in readiness and in the log line: a wrong password and an unknown CA are
    not "Kafka unavailable" and restarting will not fix them until the secret is fixed.
    """
    import aiokafka.errors as ak_errors

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            ak_errors.SaslAuthenticationFailed
            | ak_errors.AuthenticationFailedError
            | ak_errors.AuthenticationMethodNotSupported
            | ak_errors.UnsupportedSaslMechanismError
            | ak_errors.IllegalSaslStateError,
        ):
            return "authentication"
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return "TLS"
        current = current.__cause__ or current.__context__
    return None
