"""structlog configured once, as JSON lines, with a processor that redacts secrets.

Redaction works two ways: values under keys that name secrets are replaced, and any string anywhere in
an event that contains a registered secret value or looks like a TikTok token (``act.…``, ``rft.…``)
is masked. Services register their configured secrets (client secret, API key, the database password,
the S3 secret, key material) at start-up; URL passwords, presigned-URL signatures, PKCE verifiers and
the browser nonce cookie are masked by pattern.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import unquote, urlsplit

import structlog

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"(^|_)(access_token|refresh_token|token|code|code_verifier|client_secret|secret|password|"
    r"authorization|api_key|upload_token|signature|cookie|set_cookie|state|nonce|database_url|dsn|"
    r"token_keys|transport_keys|secret_access_key)$",
    re.IGNORECASE,
)
# Named like a secret ("…_code") but what an operator must read: a stable error code.
_PUBLIC_KEYS = frozenset({"error_code", "status_code", "http_code"})
_TOKEN_LIKE = re.compile(r"\b(?:act|rft|clt)\.[A-Za-z0-9._~\-*]+(?:![0-9]+)?")
_URL_SECRET_PARAM = re.compile(
    r"((?:^|[?&;,\s])(?:code|state|upload_token|access_token|refresh_token|client_secret|token|"
    r"code_verifier|x-amz-signature|x-amz-credential|x-amz-security-token|signature|"
    r"(?:__Host-)?tt_connect)=)[^&;,\s\"']+",
    re.IGNORECASE,
)
# scheme://user:password@host: the password (a DSN in a driver's error message, a URL in a log line).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)[^@/\s]+(@)")

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log event (ignored when shorter than 6)."""
    if value and len(value) >= 6:
        with _lock:
            _registered.add(value)


MIN_MASKED_PASSWORD = 12
"""A shorter database password (a dev stack's ``tiktok``) is a word, not a secret worth blanking out
everywhere (it would mask topic names); inside a URL it is still masked by pattern."""


def register_dsn_password(dsn: str | None) -> None:
    """Mask the password of a ``scheme://user:password@host/…`` URL wherever it appears."""
    if dsn:
        with contextlib.suppress(ValueError):
            for password in (urlsplit(dsn).password or "", unquote(urlsplit(dsn).password or "")):
                if len(password) >= MIN_MASKED_PASSWORD:
                    register_secret(password)


def register_key_material(keys: Iterable[bytes]) -> None:
    """Mask each key of a key ring as it could be written (base64url or standard, padded or not)."""
    for key in keys:
        for encode in (base64.urlsafe_b64encode, base64.b64encode):
            text = encode(key).decode()
            register_secret(text)
            register_secret(text.rstrip("="))


def redact_text(text: str) -> str:
    for secret in tuple(_registered):
        if secret in text:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_LIKE.sub(REDACTED, text)
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + REDACTED + m.group(2), text)
    return _URL_SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower() not in _PUBLIC_KEYS and bool(_SECRET_KEY.search(key))


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 8:  # too deep to inspect: nothing unchecked gets out (a token may hide down there)
        return value if value is None or isinstance(value, bool | int | float) else REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: (REDACTED if _secret_key(k) and v else _redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(v, depth + 1) for v in value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return value


def redact_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: redact by key name and by value pattern."""
    return _redact(event_dict)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure structlog and the stdlib root logger once; safe to call again (tests do)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka and aiohttp are chatty at INFO; keep them at WARNING unless debugging.
    for noisy in ("aiokafka", "aiohttp.access", "botocore", "aiobotocore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
