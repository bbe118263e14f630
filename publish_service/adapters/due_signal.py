"""Wakes idle workers when a post becomes due: PostgreSQL ``LISTEN`` on ``<schema>_posts_due``.

Migration 0007's trigger sends the notification when a post row becomes due now and unleased, at the
commit of the transaction that made it so. ``DueSignal.run`` holds one pool connection that listens;
each notification bumps a generation counter. A worker reads ``generation`` *before* it looks for work
and, finding none, waits in :meth:`DueSignal.wait` for a newer generation: a notification that arrives
between its look and its wait is therefore never missed. The workers keep their poll as a fallback
(while the connection is down, for posts that become due by the clock).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from common.db import session_connection, validate_identifier
from common.tasks import sleep_or_stop

log = structlog.get_logger(__name__)

CHECK_EVERY_S = 5.0
"""How often the listening connection is checked (a dead one raises, and the loop starts again)."""


def due_channel(schema: str) -> str:
    """The channel migration 0007's trigger notifies (``TG_TABLE_SCHEMA || '_posts_due'``)."""
    return f"{validate_identifier(schema)}_posts_due"


class DueSignal:
    def __init__(self, pool: Any, schema: str) -> None:
        self._pool = pool
        self._channel = due_channel(schema)
        self._next = asyncio.Event()  # set (and replaced) at each notification
        self.generation = 0
        self.listening = False

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self.generation += 1
        fired, self._next = self._next, asyncio.Event()
        fired.set()

    async def wait(self, seen: int, seconds: float) -> None:
        """Return when ``generation`` has moved past ``seen``, or after ``seconds``."""
        if self.generation != seen:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._next.wait(), seconds)

    async def run(self, stopping: asyncio.Event) -> None:
        """Listen until ``stopping`` is set; raises when the connection breaks (the supervisor restarts)."""
        async with session_connection(self._pool) as conn:
            await conn.add_listener(self._channel, self._on_notify)
            self.listening = True
            # Work may have become due while nobody listened: let the workers look once.
            self._on_notify(conn, 0, self._channel, "")
            log.info("due_signal_listening", channel=self._channel)
            try:
                while not await sleep_or_stop(stopping, CHECK_EVERY_S):
                    await conn.fetchval("SELECT 1")
            finally:
                self.listening = False
                if not conn.is_closed():
                    await conn.remove_listener(self._channel, self._on_notify)
