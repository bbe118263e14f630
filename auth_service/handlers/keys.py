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

from auth_service.adapters.postgres import Repository

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
            last, batch_rewritten, batch_announced = await tx.rotate_accounts(after, batch_size)
        if last is None:
            break
        after = last
        rewritten += batch_rewritten
        announced += batch_announced
        log.info("keys_rotated_batch", up_to=last, rewritten=rewritten, reannounced=announced)
    async with repo.transaction("rotate-keys") as tx:
        states = await tx.rotate_states()
    report = RotationReport(rewritten, announced, states)
    log.info("keys_rotated", rewritten=rewritten, reannounced=announced, states=states)
    return report
