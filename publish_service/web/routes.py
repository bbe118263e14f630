"""HTTP routes: post lookup, post submission (for callers without Kafka), TikTok webhooks."""

from __future__ import annotations

import time

import structlog
from aiohttp import web
from pydantic import ValidationError

from common.errors import InvalidInput, NotFound, Unauthorized
from common.events import BadEvent, EventType, PostRequestedData, encode, parse_json
from common.kafka import TOPIC_POST_REQUESTED
from common.tiktok.webhooks import BadSignature, verify
from publish_service.handlers.webhooks import parse_webhook
from publish_service.keys import CANCELLATION, PRODUCER, REPO, SETTINGS, WEBHOOKS
from publish_service.web.views import post_view

log = structlog.get_logger(__name__)


async def get_post(request: web.Request) -> web.Response:
    post = await request.app[REPO].get(request.match_info["post_id"])
    if post is None:
        raise NotFound(f"no post {request.match_info['post_id']!r}")
    return web.json_response(post_view(post))


async def cancel_post(request: web.Request) -> web.Response:
    """Cancel a post TikTok has not heard of yet (received or scheduled); 409 once work has begun."""
    cancelled = await request.app[CANCELLATION].cancel(request.match_info["post_id"])
    return web.json_response(post_view(cancelled))


async def submit_post(request: web.Request) -> web.Response:
    """Validate a post request and put it on ``tiktok.post.requested``; 202, the rest is asynchronous."""
    try:
        body = parse_json(await request.read())  # bytes: an invalid charset or encoding is "not JSON"
    except BadEvent as exc:
        if exc.code == "not_json":
            raise InvalidInput("the body is not JSON") from exc
        raise  # too_deep, a NUL character: a 400 with its own code
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object (the post request's data)")
    try:
        post = PostRequestedData.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        raise InvalidInput(problems) from exc
    settings = request.app[SETTINGS]
    correlation_id = request.headers.get("X-Correlation-Id")
    value, headers = encode(EventType.post_requested, post, correlation_id=correlation_id)
    await request.app[PRODUCER].send(settings.topic(TOPIC_POST_REQUESTED), post.account_id, value, headers)
    return web.json_response({"post_id": post.post_id, "status": "accepted"}, status=202)


async def tiktok_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    settings = request.app[SETTINGS]
    try:
        verify(
            request.headers.get("TikTok-Signature"),
            body,
            settings.tiktok_client_secret.get(),
            now=time.time(),
            tolerance=settings.webhook_tolerance_s,
        )
    except BadSignature as exc:
        log.warning("webhook_bad_signature", error=str(exc))
        raise Unauthorized(f"bad webhook signature: {exc}") from exc
    outcome = await request.app[WEBHOOKS].handle(parse_webhook(body))
    return web.json_response({"status": "ok", "outcome": outcome})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/posts/{post_id}", get_post),
        web.post("/v1/posts", submit_post),
        web.post("/v1/posts/{post_id}/cancel", cancel_post),
        web.post("/v1/webhooks/tiktok", tiktok_webhook),
    ]
