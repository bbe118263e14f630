"""Key rotation: re-encrypt every ciphertext under the active key, in small batches, while serving.

Procedure (no downtime; the same for TOKEN_KEYS and TRANSPORT_KEYS):

1. Add the new key to the ring of every replica, still with the old key active
   (``TOKEN_KEYS=old:…,new:…``, ``TOKEN_ACTIVE_KEY_ID=old``); for the transport key, give it to
   publish_service as well. Every replica can now open both.
2. Make the new key active (``TOKEN_ACTIVE_KEY_ID=new``) and roll the replicas; new writes use it.
3. Run ``python -m auth_service rotate-keys``: every stored ciphertext is rewritten under the active
   key, and access tokens last announced under an older transport key are announced again.
4. Drop the old key from the rings.

Each batch is one short transaction that locks its rows, so a refresh committing at the same time
waits a moment and nothing is lost; values are always decrypted from what is stored at that moment.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from auth_service.adapters.postgres import Repository, Tx
from auth_service.adapters.vault import ACCESS, PKCE, REFRESH, pkce_binding
from common.events import AccountStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RotationReport:
    ciphertexts_rewritten: int
    tokens_reannounced: int
    states_rewritten: int


async def rotate_keys(repo: Repository, *, batch_size: int = 200) -> RotationReport:
    after, rewritten, announced = "", 0, 0
    while True:
        async with repo.transaction("rotate-keys") as tx:
            last, batch_rewritten, batch_announced = await _rotate_accounts(tx, after, batch_size)
        if last is None:
            break
        after = last
        rewritten += batch_rewritten
        announced += batch_announced
        log.info("keys_rotated_batch", up_to=last, rewritten=rewritten, reannounced=announced)
    async with repo.transaction("rotate-keys") as tx:
        states = await _rotate_states(tx)
    report = RotationReport(rewritten, announced, states)
    log.info("keys_rotated", rewritten=rewritten, reannounced=announced, states=states)
    return report


async def _rotate_accounts(tx: Tx, after: str, limit: int) -> tuple[str | None, int, int]:
    """Re-encrypt the next ``limit`` accounts after ``after`` under the active keys.

    Returns (last id seen or None at the end, ciphertexts rewritten, access tokens re-announced).
    Rows are locked for the length of this short transaction only; a refresh committing at the
    same moment waits for it, and a value is always decrypted from what is stored now.
    """
    sealed = await tx.lock_sealed(after, limit)
    vault = tx.vault
    tokens, transport_id = vault.tokens, vault.transport.active_id
    rewritten = announced = 0
    for row in sealed:
        account = row.account
        new_access = tokens.rotate(row.access_token_ct, account_id=account.id, purpose=ACCESS)
        new_refresh = tokens.rotate(row.refresh_token_ct, account_id=account.id, purpose=REFRESH)
        stale_transport = row.transport_key_id != transport_id
        if new_access == row.access_token_ct and new_refresh == row.refresh_token_ct and not stale_transport:
            continue
        await tx.store_ciphertexts(account.id, new_access, new_refresh, transport_id)
        rewritten += (new_access != row.access_token_ct) + (new_refresh != row.refresh_token_ct)
        if stale_transport and account.status == AccountStatus.connected:
            # Consumers can drop the old transport key once the compacted topic holds only new ones.
            token = vault.open(new_access, account_id=account.id, purpose=ACCESS)
            await tx.emit_access_token(account, token)
            announced += 1
    return (sealed[-1].account.id if sealed else None), rewritten, announced


async def _rotate_states(tx: Tx) -> int:
    changed = 0
    for row in await tx.lock_sealed_verifiers():
        binding = pkce_binding(row.state_hash)
        new = tx.vault.tokens.rotate(row.code_verifier_ct, account_id=binding, purpose=PKCE)
        if new != row.code_verifier_ct:
            await tx.store_verifier(row.state_hash, new)
            changed += 1
    return changed
