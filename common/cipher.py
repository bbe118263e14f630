"""AES-256-GCM for tokens at rest and on Kafka, with a key ring so keys can rotate.

Ciphertext format: ``v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The key id names which key
of the ring decrypts it. The associated data binds the ciphertext to one account and one purpose
(``access_token``, ``refresh_token``, ``transport``), so a ciphertext moved to another row or used
for another purpose fails to decrypt. An access token on ``tiktok.access-tokens`` is also bound to its
``token_version`` (:func:`transport_purpose`), so a genuine older record replayed with a rewritten,
higher version does not open and is refused.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from common.errors import ConfigError, PipelineError

_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def transport_purpose(token_version: int) -> str:
    """The purpose an access token is sealed for on Kafka: the transport key, bound to its version."""
    return f"transport:v{token_version}"


class DecryptionFailed(PipelineError):
    code = "decryption_failed"


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def generate_key() -> str:
    """A fresh 256-bit key, base64url-encoded, for ``TOKEN_KEYS`` / ``TRANSPORT_KEYS``."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes]
    active_id: str

    def __post_init__(self) -> None:
        if self.active_id not in self.keys:
            raise ConfigError(f"the active key id {self.active_id!r} is not in the key ring")
        for kid, key in self.keys.items():
            if not _KID.match(kid):
                raise ConfigError(f"key id {kid!r} must be 1-32 letters, digits, '_' or '-'")
            if len(key) != 32:
                raise ConfigError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")

    def __repr__(self) -> str:
        return f"KeyRing(ids={sorted(self.keys)}, active_id={self.active_id!r})"

    @classmethod
    def parse(cls, spec: str, active_id: str | None = None, *, name: str = "TOKEN_KEYS") -> KeyRing:
        """Parse ``kid:base64key,kid2:base64key``; the active key defaults to the last one listed."""
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            if not sep:
                raise ConfigError(f"{name}: each entry must be key_id:base64key")
            try:
                keys[kid] = _b64d(encoded)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{name}: key {kid!r} is not valid base64") from None
        if not keys:
            raise ConfigError(f"{name} holds no keys")
        return cls(keys=keys, active_id=active_id or list(keys)[-1])


class TokenCipher:
    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring
        self._aead = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    @property
    def active_id(self) -> str:
        return self._ring.active_id

    @staticmethod
    def _aad(account_id: str, purpose: str) -> bytes:
        return f"tiktok-pipeline|{purpose}|{account_id}".encode()

    def encrypt(self, plaintext: str, *, account_id: str, purpose: str) -> str:
        nonce = os.urandom(12)
        kid = self._ring.active_id
        sealed = self._aead[kid].encrypt(nonce, plaintext.encode(), self._aad(account_id, purpose))
        return f"v1.{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    @staticmethod
    def key_id_of(ciphertext: str) -> str:
        version, _, rest = ciphertext.partition(".")
        kid, _, _ = rest.partition(".")
        if version != "v1" or not kid:
            raise DecryptionFailed("not a v1 token ciphertext")
        return kid

    def decrypt(self, ciphertext: str, *, account_id: str, purpose: str) -> str:
        kid = self.key_id_of(ciphertext)
        aead = self._aead.get(kid)
        if aead is None:
            raise DecryptionFailed(f"no key with id {kid!r} in the key ring")
        try:
            blob = _b64d(ciphertext.split(".", 2)[2])
            return aead.decrypt(blob[:12], blob[12:], self._aad(account_id, purpose)).decode()
        except (InvalidTag, binascii.Error, ValueError, IndexError):
            raise DecryptionFailed("the ciphertext does not open for this account and purpose") from None

    def knows_key_of(self, ciphertext: str) -> bool:
        """Whether the key ring holds the key this ciphertext names (False for a malformed one)."""
        try:
            return self.key_id_of(ciphertext) in self._aead
        except DecryptionFailed:
            return False

    def needs_rotation(self, ciphertext: str) -> bool:
        return self.key_id_of(ciphertext) != self._ring.active_id

    def rotate(self, ciphertext: str, *, account_id: str, purpose: str) -> str:
        """Re-encrypt under the active key (a no-op result when it already is)."""
        if not self.needs_rotation(ciphertext):
            return ciphertext
        return self.encrypt(
            self.decrypt(ciphertext, account_id=account_id, purpose=purpose),
            account_id=account_id,
            purpose=purpose,
        )
