"""Typed `web.AppKey`s for everything the sandbox app owns."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from .clock import Clock
from .config import SandboxConfig
from .store import Store

if TYPE_CHECKING:
    from .pull import Puller
    from .webhooks import WebhookDispatcher

BACKGROUND = web.AppKey("background_tasks", list[asyncio.Task[None]])
CONFIG = web.AppKey("config", SandboxConfig)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", Store)
HTTP = web.AppKey("http_session", aiohttp.ClientSession)
PULLER: web.AppKey[Puller] = web.AppKey("puller")
WEBHOOKS: web.AppKey[WebhookDispatcher] = web.AppKey("webhooks")
