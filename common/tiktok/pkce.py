"""PKCE as TikTok does it (spec §2.6): the challenge is the *hex* SHA-256 of the verifier."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits + "-._~"


def make_code_verifier(length: int = 64) -> str:
    if not 43 <= length <= 128:
        raise ValueError("a code verifier has 43 to 128 characters")
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def code_challenge(verifier: str) -> str:
    return hashlib.sha256(verifier.encode("ascii")).hexdigest()
