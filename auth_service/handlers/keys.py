"""Key rotation: re-encrypt every ciphertext under the active key, in small batches, while serving.

Procedure (no downtime): 1) deploy every replica with the new key added to the ring and made active
(old ciphertexts still open, new writes use the new key); 2) run ``python -m auth_service rotate-keys``;
3) drop the old key from the ring. The command also re-announces access tokens whose last event was
sealed with an older transport key, so publish_service can drop that key after step 3 as well.
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
