"""Outbound webhooks (§8): signed POSTs with retries on a compressed backoff schedule.

One owned loop sends deliveries in order of due time. Each delivery is recorded so tests can read
what was sent, how often and with what answer (`GET /_sandbox/webhooks`).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from .config import AppSeed, SandboxConfig
from .models import Event

log = structlog.get_logger("tiktok_sandbox.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`TikTok-Signature` value: `t=<ts>,s=<hex HMAC-SHA256(secret, "<ts>." + body)>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},s={mac}"


@dataclass
class Delivery:
    delivery_id: int
    url: str
    secret: str = field(repr=False)
    body: bytes
    event: str
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False
    dropped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "url": self.url,
            "event": self.event,
            "body": json.loads(self.body),
            "attempts": self.attempts,
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


class WebhookDispatcher:
    def __init__(self, config: SandboxConfig, session: aiohttp.ClientSession) -> None:
        self._config = config
        self._session = session
        self._ids = itertools.count(1)
        self._due: list[tuple[float, int, Delivery]] = []
        self._wake = asyncio.Event()
        self.deliveries: list[Delivery] = []

    def deliver(self, app: AppSeed, event: Event) -> None:
        url = app.webhook_url or self._config.webhook_url
        if not url:
            return
        body = json.dumps(
            {
                "client_key": event.client_key,
                "event": event.event,
                "create_time": event.create_time,
                "user_openid": event.user_openid,
                "content": json.dumps(event.content, separators=(",", ":")),
            },
            separators=(",", ":"),
        ).encode()
        delivery = Delivery(next(self._ids), url, app.client_secret, body, event.event)
        self.deliveries.append(delivery)
        heapq.heappush(self._due, (time.monotonic(), delivery.delivery_id, delivery))
        self._wake.set()

    def clear(self) -> None:
        self._due.clear()
        self.deliveries.clear()

    async def run(self) -> None:
        """Owned loop: send whatever is due, sleep until the next due time or a new delivery."""
        while True:
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, delivery = heapq.heappop(self._due)
                await self._attempt(delivery)
            timeout = self._due[0][0] - time.monotonic() if self._due else 3600.0
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _attempt(self, delivery: Delivery) -> None:
        ts = int(time.time())
        signature = sign(delivery.secret, ts, delivery.body)
        headers = {"Content-Type": "application/json", "TikTok-Signature": signature}
        status: int | None = None
        error: str | None = None
        try:
            timeout = aiohttp.ClientTimeout(total=self._config.webhook_timeout_s)
            post = self._session.post(delivery.url, data=delivery.body, headers=headers, timeout=timeout)
            async with post as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            error = repr(e)
        delivery.attempts.append({"at": time.time(), "status": status, "error": error})
        if status == 200:
            delivery.delivered = True
            return
        schedule = self._config.webhook_retry_schedule_s
        retry = len(delivery.attempts) - 1
        if retry >= len(schedule):
            delivery.dropped = True
            log.info("webhook_dropped", delivery_id=delivery.delivery_id, webhook_event=delivery.event)
            return
        heapq.heappush(self._due, (time.monotonic() + schedule[retry], delivery.delivery_id, delivery))
