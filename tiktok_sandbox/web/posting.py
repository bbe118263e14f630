"""Content Posting routes (§4): steps 1-3 of §9.2 here, the rest in `posting.py`."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .. import posting
from ..config import (
    ENDPOINT_CANCEL,
    ENDPOINT_CONTENT_INIT,
    ENDPOINT_CREATOR_INFO,
    ENDPOINT_INBOX_INIT,
    ENDPOINT_STATUS,
    ENDPOINT_VIDEO_INIT,
)
from ..errors import ApiError
from ..keys import PULLER, STORE
from ..models import AccessToken
from ..store import Store
from .common import envelope, ok
from .upload import put_chunk


def _gate(request: web.Request, endpoint: str, *scopes: str) -> tuple[Store, AccessToken]:
    store = request.app[STORE]
    at = store.authenticate(request.headers.get("Authorization"))
    store.require_scope(at, *scopes)
    store.rate_limit(at, endpoint)
    return store, at


async def _json(request: web.Request, store: Store, *, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip() and optional:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
        raise ApiError(400, store.config.invalid_param_code, "The request body is not valid JSON.") from None


def base_url(request: web.Request) -> str:
    configured = request.app[STORE].config.public_base_url
    return configured.rstrip("/") if configured else f"{request.scheme}://{request.host}"


async def creator_info(request: web.Request) -> web.StreamResponse:
    store, at = _gate(request, ENDPOINT_CREATOR_INFO, "video.publish")
    await _json(request, store, optional=True)
    return ok(store, posting.creator_info(store, at))


async def _video_init(request: web.Request, *, direct: bool) -> web.StreamResponse:
    endpoint = ENDPOINT_VIDEO_INIT if direct else ENDPOINT_INBOX_INIT
    store, at = _gate(request, endpoint, "video.publish" if direct else "video.upload")
    body = await _json(request, store)
    data = posting.init_video(store, at, body, direct=direct, base_url=base_url(request))
    post = store.posts[data["publish_id"]]
    if post.source == "PULL_FROM_URL":
        request.app[PULLER].start(post)
    return ok(store, data)


async def video_init(request: web.Request) -> web.StreamResponse:
    return await _video_init(request, direct=True)


async def inbox_video_init(request: web.Request) -> web.StreamResponse:
    return await _video_init(request, direct=False)


async def content_init(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    at = store.authenticate(request.headers.get("Authorization"))
    body = await _json(request, store)
    mode = posting.photo_post_mode(body)
    scopes = {"DIRECT_POST": ("video.publish",), "MEDIA_UPLOAD": ("video.upload",)}.get(
        mode or "", ("video.publish", "video.upload")
    )
    store.require_scope(at, *scopes)
    store.rate_limit(at, ENDPOINT_CONTENT_INIT)
    post = posting.init_photo(store, at, body)
    request.app[PULLER].start(post)
    return ok(store, {"publish_id": post.publish_id})


async def status_fetch(request: web.Request) -> web.StreamResponse:
    store, at = _gate(request, ENDPOINT_STATUS, "video.upload", "video.publish")
    post = posting.owned_post(store, at, await _json(request, store))
    return ok(store, posting.status(store, post))


async def cancel(request: web.Request) -> web.StreamResponse:
    store, at = _gate(request, ENDPOINT_CANCEL, "video.upload", "video.publish")
    post = posting.owned_post(store, at, await _json(request, store))
    posting.cancel(store, post)
    return web.json_response(envelope(store, None))


def routes() -> list[web.RouteDef]:
    return [
        web.post(ENDPOINT_CREATOR_INFO, creator_info),
        web.post(ENDPOINT_VIDEO_INIT, video_init),
        web.post(ENDPOINT_INBOX_INIT, inbox_video_init),
        web.post(ENDPOINT_CONTENT_INIT, content_init),
        web.post(ENDPOINT_STATUS, status_fetch),
        web.post(ENDPOINT_CANCEL, cancel),
        web.put("/video/", put_chunk),
    ]
