"""Refresh leases: claiming due or requested accounts, and giving the lease back.

One claim query serves both the schedule and on-demand requests: it leases connected accounts whose
lease is free and that match a condition (due now, or this account if the request is still
unanswered), skipping rows another replica is claiming at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from auth_service.adapters.postgres.base import RepositoryBase
from auth_service.adapters.vault import REFRESH
from auth_service.domain.tokens import Claim
from common.cipher import DecryptionFailed

log = structlog.get_logger(__name__)

# $1 owner, $2 lease seconds, $3 limit; the condition may use $4 and after.
_CLAIM = """
    WITH target AS (
        SELECT id FROM {schema}.accounts
        WHERE status = 'connected' AND (lease_until IS NULL OR lease_until < now()) AND ({condition})
        ORDER BY refresh_due_at
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {schema}.accounts a
       SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
      FROM target WHERE a.id = target.id
    RETURNING a.id, a.open_id, a.token_version, a.refresh_token_ct, a.refresh_failures,
              coalesce(a.refresh_expires_at <= now(), false) AS refresh_expired
"""

_DUE = "refresh_due_at <= now()"

# A request is already answered when the requester saw an older version than the current one, or
# (no version given) when the last refresh is younger than the minimum interval.
_REQUESTED = """
    id = $4 AND CASE WHEN $5::bigint IS NULL
                     THEN last_refreshed_at IS NULL OR last_refreshed_at < now() - make_interval(secs => $6)
                     ELSE token_version <= $5::bigint END
"""


class Claims(RepositoryBase):
    async def _claim(self, condition: str, owner: str, lease_s: float, limit: int, *args: Any) -> list[Claim]:
        rows = await self._pool.fetch(
            _CLAIM.format(schema=self._s, condition=condition), owner, lease_s, limit, *args
        )
        return await self._opened(rows, owner)

    async def claim_due(self, owner: str, limit: int, lease_s: float) -> list[Claim]:
        """Lease up to ``limit`` due accounts to ``owner``; rows another replica is claiming are skipped."""
        return await self._claim(_DUE, owner, lease_s, limit)

    async def claim_requested(
        self, account_id: str, owner: str, lease_s: float, seen_version: int | None, min_interval_s: float
    ) -> Claim | None:
        """Lease one account for an on-demand refresh, unless the request is already answered.

        Skipped when the account is not connected, when a refresh is in flight (leased), when the
        requester saw an older version than the current one, or (no version given) when the last
        refresh is younger than ``min_interval_s``: a storm of requests causes one refresh.
        """
        claims = await self._claim(
            _REQUESTED, owner, lease_s, 1, account_id, seen_version, float(min_interval_s)
        )
        return claims[0] if claims else None

    async def _opened(self, rows: Sequence[Any], owner: str) -> list[Claim]:
        """Open the claimed rows' refresh tokens; a row that won't open is parked, not retried hot."""
        claims, unreadable = [], []
        for row in rows:
            try:
                claims.append(
                    Claim(
                        account_id=row["id"],
                        open_id=row["open_id"],
                        token_version=int(row["token_version"]),
                        refresh_token=self.vault.open(
                            row["refresh_token_ct"], account_id=row["id"], purpose=REFRESH
                        ),
                        refresh_expired=bool(row["refresh_expired"]),
                        refresh_failures=int(row["refresh_failures"]),
                    )
                )
            except DecryptionFailed:
                unreadable.append(row["id"])
        if unreadable:
            # A key missing from the ring is an operator's mistake: say so loudly, retry in an hour.
            log.error("refresh_token_unreadable", account_ids=unreadable[:20], count=len(unreadable))
            await self._pool.execute(
                f"UPDATE {self._s}.accounts SET lease_owner = NULL, lease_until = NULL,"
                " last_error = 'decryption_failed', refresh_due_at = now() + interval '1 hour'"
                " WHERE id = ANY($1::text[]) AND lease_owner = $2",
                unreadable,
                owner,
            )
        return claims

    async def release_for_retry(self, claim: Claim, owner: str, retry_in_s: float, error: str) -> None:
        await self._pool.execute(
            f"""
            UPDATE {self._s}.accounts SET
                refresh_failures = refresh_failures + 1, last_error = $4,
                refresh_due_at = now() + make_interval(secs => $3),
                lease_owner = NULL, lease_until = NULL, updated_at = now()
            WHERE id = $1 AND lease_owner = $2 AND token_version = $5
            """,
            claim.account_id,
            owner,
            retry_in_s,
            error,
            claim.token_version,
        )

    async def release(self, claim: Claim, owner: str) -> None:
        await self._pool.execute(
            f"UPDATE {self._s}.accounts SET lease_owner = NULL, lease_until = NULL"
            " WHERE id = $1 AND lease_owner = $2",
            claim.account_id,
            owner,
        )
