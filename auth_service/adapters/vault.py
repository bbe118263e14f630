"""The token vault's crypto: which purpose each stored secret is sealed for.

Ciphertexts carry their key id and are bound to the account id and purpose (common.cipher), so a
ciphertext copied to another row, or from the refresh-token column to the access-token column, does
not open.
"""

from __future__ import annotations

from common.cipher import TokenCipher, transport_purpose

ACCESS = "access_token"
REFRESH = "refresh_token"
PKCE = "pkce_verifier"


def pkce_binding(state_hash: bytes) -> str:
    """The 'account id' a PKCE verifier is bound to: the sign-in it belongs to."""
    return "oauth_state:" + state_hash.hex()


class Vault:
    def __init__(self, tokens: TokenCipher, transport: TokenCipher) -> None:
        self.tokens = tokens
        self.transport = transport

    def seal(self, value: str, *, account_id: str, purpose: str) -> str:
        return self.tokens.encrypt(value, account_id=account_id, purpose=purpose)

    def open(self, ciphertext: str, *, account_id: str, purpose: str) -> str:
        return self.tokens.decrypt(ciphertext, account_id=account_id, purpose=purpose)

    def seal_for_transport(self, access_token: str, *, account_id: str, token_version: int) -> str:
        """Sealed for ``tiktok.access-tokens``, bound to the account and to this token's version."""
        return self.transport.encrypt(
            access_token, account_id=account_id, purpose=transport_purpose(token_version)
        )
