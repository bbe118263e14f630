"""Typed keys of the resources the app holds (``app[KEY]``); no module-level globals."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from common.kafka import Producer
from common.outbox_relay import OutboxRelay
from common.s3 import ObjectStore
from common.tasks import BackgroundLoops
from common.tiktok.client import TikTokClient
from publish_service.adapters.kafka_state import FullTopicSource
from publish_service.adapters.repository import Repository
from publish_service.handlers.cancel import Cancellation
from publish_service.handlers.webhooks import WebhookHandler
from publish_service.metrics import Metrics
from publish_service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
POOL = web.AppKey("pool", Any)
REPO = web.AppKey("repo", Repository)
PRODUCER = web.AppKey("producer", Producer)
STORE = web.AppKey("object_store", ObjectStore)
HTTP = web.AppKey("http_session", aiohttp.ClientSession)
TIKTOK = web.AppKey("tiktok", TikTokClient)
WEBHOOKS = web.AppKey("webhooks", WebhookHandler)
CANCELLATION = web.AppKey("cancellation", Cancellation)
STATE_READER = web.AppKey("state_reader", FullTopicSource)
LOOPS = web.AppKey("loops", BackgroundLoops)
RELAY_LOOPS = web.AppKey("relay_loops", BackgroundLoops)
RELAY = web.AppKey("relay", OutboxRelay)
