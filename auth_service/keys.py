"""Every typed key of the auth app (aiohttp ``web.AppKey``), in one place; app.py's contexts set them."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from auth_service.adapters.postgres import Repository
from auth_service.domain.rate_limit import AddressLimiter
from auth_service.handlers.accounts import Accounts
from auth_service.handlers.connect import ConnectFlow
from auth_service.handlers.refresh import Refresher
from auth_service.handlers.revoke import RevokeRetries
from auth_service.metrics import Metrics
from auth_service.settings import Settings
from common.events import Envelope, RefreshRequestedData
from common.kafka import ConsumeLoop, Producer
from common.outbox_relay import OutboxRelay
from common.tasks import BackgroundLoops
from common.tiktok.client import TikTokClient

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
INSTANCE = web.AppKey("instance", str)
POOL = web.AppKey("pool", Any)
REPOSITORY = web.AppKey("repository", Repository)
BACKGROUND_POOL = web.AppKey("background_pool", Any)
BACKGROUND_REPOSITORY = web.AppKey("background_repository", Repository)
"""On connections web handlers cannot take: refresh loop, outbox relay, housekeeping (#12.11)."""
CONNECT_LIMITER = web.AppKey("connect_limiter", AddressLimiter)
REVOKE_RETRIES = web.AppKey("revoke_retries", RevokeRetries)
HTTP = web.AppKey("http", aiohttp.ClientSession)
TIKTOK = web.AppKey("tiktok", TikTokClient)
CONNECT = web.AppKey("connect", ConnectFlow)
ACCOUNTS = web.AppKey("accounts", Accounts)
REFRESHER = web.AppKey("refresher", Refresher)
PRODUCER = web.AppKey("producer", Producer)
RELAY = web.AppKey("relay", OutboxRelay)
REFRESH_REQUESTS: web.AppKey[ConsumeLoop[Envelope[RefreshRequestedData]]] = web.AppKey("refresh_requests")
LOOPS = web.AppKey("loops", BackgroundLoops)
