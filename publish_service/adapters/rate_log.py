"""The per-(account, endpoint) call log behind TikTok's rate limits, shared by every replica."""

from __future__ import annotations

from publish_service.adapters.pg import Connection
from publish_service.domain import rate_window


class RateLog:
    def __init__(self, schema: str, window_s: float) -> None:
        self._s = schema
        self._window_s = window_s

    async def acquire_slot(self, db: Connection, account_id: str, endpoint: rate_window.Endpoint) -> float:
        """Take a slot of the (account, endpoint) window; 0 when taken, else seconds to wait.

        An advisory transaction lock per (account, endpoint) serialises replicas; the database
        clock is the one clock they share.
        """
        limit = rate_window.LIMITS[endpoint]
        window = self._window_s + rate_window.SAFETY_S
        async with db.transaction():
            await db.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"{account_id}|{endpoint.value}"
            )
            now = await db.fetchval("SELECT extract(epoch FROM clock_timestamp())::float8")
            stamps = await db.fetch(
                f"""SELECT extract(epoch FROM at)::float8 AS t FROM {self._s}.rate_calls
                    WHERE account_id = $1 AND endpoint = $2 AND at > to_timestamp($3)""",
                account_id,
                endpoint.value,
                now - window,
            )
            decision = rate_window.decide([r["t"] for r in stamps], now, limit, window)
            if not decision.allowed:
                return decision.wait_s
            await db.execute(
                f"""INSERT INTO {self._s}.rate_calls (account_id, endpoint, at)
                    VALUES ($1, $2, to_timestamp($3))""",
                account_id,
                endpoint.value,
                now,
            )
            await db.execute(
                f"""DELETE FROM {self._s}.rate_calls
                    WHERE account_id = $1 AND endpoint = $2 AND at < to_timestamp($3)""",
                account_id,
                endpoint.value,
                now - 10 * window,
            )
            return 0.0
