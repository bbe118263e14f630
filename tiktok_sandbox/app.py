"""Composition root: `create_app(config)` wires the store, routes and owned background work."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from .clock import Clock
from .config import SandboxConfig
from .insights import VideoBook
from .keys import BACKGROUND, CLOCK, CONFIG, HTTP, PULLER, STORE, WEBHOOKS
from .pull import Puller
from .store import Store
from .web import control, display, oauth, posting
from .web.common import calls_and_faults_middleware, error_middleware
from .webhooks import WebhookDispatcher

TICK_S = 0.2


async def _data_dir(app: web.Application) -> AsyncIterator[None]:
    configured = app[CONFIG].data_dir
    temp = None if configured else tempfile.mkdtemp(prefix="tiktok-sandbox-")
    path = Path(configured or temp or ".")
    await asyncio.to_thread(path.mkdir, parents=True, exist_ok=True)
    app[STORE].data_dir = path
    yield
    if temp is not None:
        shutil.rmtree(temp, ignore_errors=True)


async def _http(app: web.Application) -> AsyncIterator[None]:
    # One session for pulls and webhooks; no env proxies, the sandbox talks to local servers.
    async with aiohttp.ClientSession(trust_env=False) as session:
        app[HTTP] = session
        yield


async def _ticker(store: Store, clock: Clock) -> None:
    """Fires due transitions (and so their webhooks) even when nobody polls; wakes on time jumps."""
    while True:
        store.advance_all()
        await clock.wait_changed(TICK_S)


async def _background(app: web.Application) -> AsyncIterator[None]:
    store, session = app[STORE], app[HTTP]
    puller = Puller(store, session)
    dispatcher = WebhookDispatcher(app[CONFIG], session)
    app[PULLER], app[WEBHOOKS] = puller, dispatcher
    store.sink = dispatcher
    # Started in the startup task and stopped in the cleanup task, so a TaskGroup (bound to one
    # parent task) does not fit; the tasks are owned here, cancelled and awaited, errors re-raised.
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(_ticker(store, app[CLOCK]), name="sandbox ticker"),
        loop.create_task(dispatcher.run(), name="sandbox webhooks"),
    ]
    app[BACKGROUND] = tasks
    yield
    await puller.close()
    for task in tasks:
        task.cancel()
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, Exception):
            raise result


def create_app(config: SandboxConfig | None = None) -> web.Application:
    config = config or SandboxConfig()
    clock = Clock()
    app = web.Application(
        middlewares=[error_middleware, calls_and_faults_middleware], client_max_size=4 * 1024 * 1024
    )
    app[CONFIG] = config
    app[CLOCK] = clock
    app[STORE] = Store(config, clock)
    app[display.VIDEOS] = VideoBook(app[STORE])
    app.cleanup_ctx.extend([_data_dir, _http, _background])
    app.add_routes(oauth.routes() + posting.routes() + control.routes() + display.routes())
    return app
