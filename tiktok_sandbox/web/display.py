"""Display API routes: ``POST /v2/video/query/`` (scope ``video.list``), and the control routes that
seed video counts and make a video private or deleted (``/_sandbox/videos``).

``/v2/user/info/`` lives in ``oauth.py``; its stats fields read :meth:`VideoBook.account_counts`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from ..config import ENDPOINT_VIDEO_QUERY
from ..errors import ApiError, ControlError
from ..insights import MAX_QUERY_IDS, VIDEO_FIELDS, VideoBook
from ..keys import STORE
from .common import ok

VIDEOS = web.AppKey("videos", VideoBook)
_VIDEO_ID = re.compile(r"^[0-9]{1,24}$")


async def video_query(request: web.Request) -> web.StreamResponse:
    """Validation order as the other endpoints: token, scope, rate limit, then the request."""
    store, book = request.app[STORE], request.app[VIDEOS]
    at = store.authenticate(request.headers.get("Authorization"))
    store.require_scope(at, "video.list")
    store.rate_limit(at, ENDPOINT_VIDEO_QUERY)
    invalid = store.config.invalid_param_code
    fields = [f for f in request.query.get("fields", "").split(",") if f]
    if not fields:
        raise ApiError(400, invalid, "fields is required")
    unknown = [f for f in fields if f not in VIDEO_FIELDS]
    if unknown:
        raise ApiError(400, invalid, f"Unknown fields: {','.join(unknown)}")
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python parses
        raise ApiError(400, invalid, "The request body is not valid JSON.") from None
    filters = body.get("filters") if isinstance(body, dict) else None
    ids = filters.get("video_ids") if isinstance(filters, dict) else None
    if not isinstance(ids, list) or not ids:
        raise ApiError(400, invalid, "filters.video_ids is required")
    if len(ids) > MAX_QUERY_IDS:
        raise ApiError(400, invalid, f"Up to {MAX_QUERY_IDS} video IDs can be included per request")
    if not all(isinstance(i, str) and _VIDEO_ID.match(i) for i in ids):
        raise ApiError(400, invalid, "video_ids must be strings of digits")
    book.sync()
    now = store.now()
    videos = []
    for video_id in dict.fromkeys(ids):  # a repeated id answers once
        video = book.visible_to(at.grant.username, video_id)
        if video is not None:  # foreign, unknown, private and deleted videos are left out
            everything = video.fields(now)
            videos.append({f: everything[f] for f in fields})
    return ok(store, {"videos": videos, "cursor": 0, "has_more": False})


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


async def list_videos(request: web.Request) -> web.Response:
    book = request.app[VIDEOS]
    book.sync()
    username = request.query.get("username")
    return web.json_response(
        [book.describe(v) for v in book.videos.values() if username is None or v.username == username]
    )


async def get_video(request: web.Request) -> web.Response:
    book = request.app[VIDEOS]
    return web.json_response(book.describe(book.get(request.match_info["video_id"])))


async def add_videos(request: web.Request) -> web.Response:
    """``{"username": "alice", "count": 300, ...seed}``: public videos with no upload behind them."""
    book = request.app[VIDEOS]
    body = await _body(request)
    username, count = body.pop("username", None), body.pop("count", 1)
    if not isinstance(username, str):
        raise ControlError(400, "username is required")
    if not isinstance(count, int) or not 1 <= count <= 10_000:
        raise ControlError(400, "count must be an integer between 1 and 10000")
    added = []
    for _ in range(count):
        video = book.add(username)
        if body:
            book.seed(video, body)
        added.append(book.describe(video))
    return web.json_response(added, status=201)


async def patch_video(request: web.Request) -> web.Response:
    """Seed counts (``view_count``…), ``growth``, or ``visibility``: public, private or deleted."""
    book = request.app[VIDEOS]
    video = book.get(request.match_info["video_id"])
    book.seed(video, await _body(request))
    return web.json_response(book.describe(video))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v2/video/query/", video_query),
        web.get("/_sandbox/videos", list_videos),
        web.post("/_sandbox/videos", add_videos),
        web.get("/_sandbox/videos/{video_id}", get_video),
        web.patch("/_sandbox/videos/{video_id}", patch_video),
    ]
