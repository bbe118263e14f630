"""The `/_sandbox/...` control and introspection API (JSON in, JSON out). Never under `/v2/`."""

from __future__ import annotations

import dataclasses
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from .. import ids
from ..config import AppSeed, ConfigError, CreatorSeed, from_mapping
from ..errors import ControlError
from ..keys import BACKGROUND, CLOCK, PULLER, STORE, WEBHOOKS
from ..models import App, Creator
from ..store import Store

FAIL_REASONS = (
    "file_format_check_failed",
    "duration_check_failed",
    "frame_rate_check_failed",
    "picture_size_check_failed",
    "internal",
    "video_pull_failed",
    "photo_pull_failed",
    "publish_cancelled",
    "auth_removed",
    "spam_risk_too_many_posts",
    "spam_risk_user_banned_from_posting",
    "spam_risk_text",
    "spam_risk",
)
FAULT_FIELDS = (
    "endpoint",
    "count",
    "status",
    "error_code",
    "message",
    "latency_ms",
    "reset_after_bytes",
    "shape",
    "body",
    "log_id_header",
    "drop_fields",
    "null_fields",
)
FAULT_SHAPES = ("wrapped", "flat", "oauth", "empty", "text")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ControlError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ControlError(400, "body must be a JSON object")
    return body


def _seed(cls: type[Any], data: dict[str, Any]) -> Any:
    try:
        return from_mapping(cls, data)
    except (ConfigError, ValueError, TypeError) as e:
        raise ControlError(400, str(e)) from e


def _changes(cls: type[Any], current: Any, body: dict[str, Any], frozen: tuple[str, ...]) -> dict[str, Any]:
    bad = set(body) & set(frozen)
    if bad:
        raise ControlError(400, f"cannot change {sorted(bad)}")
    merged = _seed(cls, {**_plain(current), **body})
    return {k: getattr(merged, k) for k in body}


def _plain(seed: Any) -> dict[str, Any]:
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in ((f.name, getattr(seed, f.name)) for f in dataclasses.fields(seed))
    }


def describe_app(app: App) -> dict[str, Any]:
    return _plain(app.seed)


def describe_creator(store: Store, creator: Creator) -> dict[str, Any]:
    return {
        **_plain(creator.seed),
        "union_id": creator.union_id,
        "open_ids": dict(creator.open_ids),
        "effective_privacy_level_options": creator.privacy_options(),
        "direct_posts_in_window": len(
            [t for t in creator.direct_posts if t > store.now() - store.config.cap_window_s]
        ),
    }


async def create_app(request: web.Request) -> web.Response:
    store = request.app[STORE]
    body = await _body(request)
    body.setdefault("client_key", "sbx" + ids.secret(13).lower())
    body.setdefault("client_secret", ids.secret(32))
    app = store.create_app(_seed(AppSeed, body))
    return web.json_response(describe_app(app), status=201)


async def list_apps(request: web.Request) -> web.Response:
    return web.json_response([describe_app(a) for a in request.app[STORE].apps.values()])


async def get_app(request: web.Request) -> web.Response:
    return web.json_response(describe_app(request.app[STORE].app(request.match_info["client_key"])))


async def patch_app(request: web.Request) -> web.Response:
    store = request.app[STORE]
    app = store.app(request.match_info["client_key"])
    changes = _changes(AppSeed, app.seed, await _body(request), ("client_key",))
    return web.json_response(describe_app(store.update_app(app.client_key, changes)))


async def create_creator(request: web.Request) -> web.Response:
    store = request.app[STORE]
    creator = store.create_creator(_seed(CreatorSeed, await _body(request)))
    return web.json_response(describe_creator(store, creator), status=201)


async def list_creators(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return web.json_response([describe_creator(store, c) for c in store.creators.values()])


async def get_creator(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return web.json_response(describe_creator(store, store.creator(request.match_info["username"])))


async def patch_creator(request: web.Request) -> web.Response:
    store = request.app[STORE]
    creator = store.creator(request.match_info["username"])
    changes = _changes(CreatorSeed, creator.seed, await _body(request), ("username",))
    return web.json_response(describe_creator(store, store.update_creator(creator.username, changes)))


async def issue_token(request: web.Request) -> web.Response:
    store = request.app[STORE]
    body = await _body(request)
    try:
        client_key, creator = str(body["client_key"]), str(body["creator"])
    except KeyError as e:
        raise ControlError(400, f"{e.args[0]} is required") from None
    scopes = body.get("scopes") or list(store.app(client_key).seed.scopes)
    if isinstance(scopes, str):
        scopes = scopes.split(",")
    return web.json_response(store.grant_directly(client_key, creator, scopes), status=201)


def _find_token(store: Store, value: str) -> Any:
    found = store.access_tokens.get(value) or store.refresh_tokens.get(value)
    if found is None:
        raise ControlError(404, "no such access or refresh token")
    return found


async def expire_token(request: web.Request) -> web.Response:
    store = request.app[STORE]
    token = _find_token(store, str((await _body(request)).get("token", "")))
    token.expires_at = store.now()
    return web.json_response({"token": token.token, "expires_at": token.expires_at})


async def revoke_token(request: web.Request) -> web.Response:
    """Simulate the user (reason 1 by default) or TikTok removing the authorization now."""
    store = request.app[STORE]
    body = await _body(request)
    token = _find_token(store, str(body.get("token", "")))
    reason = int(body.get("reason", 1))
    store.remove_authorization(token.grant, reason=reason)
    return web.json_response({"grant_id": token.grant.grant_id, "reason": reason})


def _time(request: web.Request) -> dict[str, Any]:
    clock = request.app[CLOCK]
    return {"now": clock.now(), "frozen": clock.frozen, "offset_s": clock.offset}


async def get_time(request: web.Request) -> web.Response:
    return web.json_response(_time(request))


async def set_time(request: web.Request) -> web.Response:
    """`{"advance_s": 3600}` and/or `{"freeze": true|false}`."""
    clock, store = request.app[CLOCK], request.app[STORE]
    body = await _body(request)
    if "freeze" in body:
        clock.freeze() if body["freeze"] else clock.unfreeze()
    if "advance_s" in body:
        try:
            clock.advance(float(body["advance_s"]))
        except ValueError as e:
            raise ControlError(400, str(e)) from e
    store.advance_all()
    return web.json_response(_time(request))


async def add_fault(request: web.Request) -> web.Response:
    store = request.app[STORE]
    body = await _body(request)
    unknown = set(body) - set(FAULT_FIELDS)
    if unknown or "endpoint" not in body:
        raise ControlError(400, f"endpoint is required; allowed keys {FAULT_FIELDS}")
    if body.get("shape") not in (None, *FAULT_SHAPES):
        raise ControlError(400, f"shape must be one of {FAULT_SHAPES}")
    status = body.get("status")
    if status is not None and (
        isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
    ):
        raise ControlError(400, "status must be an HTTP status (100-599)")
    rule = store.faults.add(**body)
    return web.json_response(rule.as_dict(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].faults.list())


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STORE].faults.clear()
    return web.json_response([])


async def list_posts(request: web.Request) -> web.Response:
    store = request.app[STORE]
    store.advance_all()
    posts = [
        store.describe(p)
        for p in store.posts.values()
        if request.query.get("client_key", p.client_key) == p.client_key
        and request.query.get("creator", p.username) == p.username
    ]
    return web.json_response(posts)


async def get_post(request: web.Request) -> web.Response:
    store = request.app[STORE]
    return web.json_response(store.describe(store.post_for_control(request.match_info["publish_id"])))


async def user_posts_draft(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = store.post_for_control(request.match_info["publish_id"])
    store.user_posts_draft(post, (await _body(request)).get("privacy_level"))
    return web.json_response(store.describe(post))


async def finish_moderation(request: web.Request) -> web.Response:
    store = request.app[STORE]
    post = store.post_for_control(request.match_info["publish_id"])
    store.finish_moderation(post)
    return web.json_response(store.describe(post))


async def fail_post(request: web.Request) -> web.Response:
    """`{"fail_reason": "...", "when": "now" | "after_processing"}`."""
    store = request.app[STORE]
    post = store.post_for_control(request.match_info["publish_id"])
    body = await _body(request)
    reason, when = body.get("fail_reason"), body.get("when", "now")
    if reason not in FAIL_REASONS or when not in ("now", "after_processing"):
        raise ControlError(400, f"fail_reason must be one of {FAIL_REASONS}; when is now|after_processing")
    store.force_fail(post, str(reason), str(when))
    return web.json_response(store.describe(post))


async def calls(request: web.Request) -> web.Response:
    return web.json_response(request.app[STORE].calls.snapshot())


async def clear_calls(request: web.Request) -> web.Response:
    request.app[STORE].calls.clear()
    return web.json_response({})


async def events(request: web.Request) -> web.Response:
    store = request.app[STORE]
    store.advance_all()
    return web.json_response([dataclasses.asdict(e) for e in store.events])


async def webhooks(request: web.Request) -> web.Response:
    return web.json_response([d.as_dict() for d in request.app[WEBHOOKS].deliveries])


def _url_signatures(source_info: Any) -> list[str]:
    urls = [source_info.get("video_url"), *source_info.get("photo_images", [])] if source_info else []
    found = []
    for url in urls:
        for name, value in parse_qsl(urlsplit(str(url or "")).query):
            if name.lower() == "x-amz-signature":
                found.append(value)
    return found


async def issued_secrets(request: web.Request) -> web.Response:
    """Test-only: every secret this sandbox issued or was sent, so a test can look for leaks."""
    store = request.app[STORE]
    return web.json_response(
        {
            "access_tokens": sorted(store.access_tokens),
            "refresh_tokens": sorted(store.refresh_tokens),
            "authorization_codes": sorted(store.codes),
            "client_tokens": sorted(store.client_tokens),
            "client_secrets": sorted(a.seed.client_secret for a in store.apps.values()),
            "code_verifiers": sorted(set(store.code_verifiers)),
            # Bearer credentials for an hour (upload_url), and the signatures of the presigned URLs
            # this sandbox was told to pull from: neither may show up anywhere else.
            "upload_tokens": sorted(p.upload.upload_token for p in store.posts.values() if p.upload),
            "presigned_signatures": sorted(
                {s for p in store.posts.values() for s in _url_signatures(p.source_info)}
            ),
        }
    )


async def reset(request: web.Request) -> web.Response:
    store = request.app[STORE]
    request.app[PULLER].abort_all()
    request.app[CLOCK].reset()  # before the store, so nothing it rebuilds is dated in the future
    store.reset()
    request.app[WEBHOOKS].clear()
    return web.json_response({})


async def health(request: web.Request) -> web.Response:
    """Healthy while the ticker and the webhook loop run."""
    dead = [t.get_name() for t in request.app[BACKGROUND] if t.done()]
    return web.json_response({"ok": not dead, "dead_loops": dead}, status=503 if dead else 200)


def routes() -> list[web.RouteDef]:
    p = "/_sandbox"
    return [
        web.get("/healthz", health),
        web.get(f"{p}/health", health),
        web.post(f"{p}/reset", reset),
        web.get(f"{p}/apps", list_apps),
        web.post(f"{p}/apps", create_app),
        web.get(f"{p}/apps/{{client_key}}", get_app),
        web.patch(f"{p}/apps/{{client_key}}", patch_app),
        web.get(f"{p}/creators", list_creators),
        web.post(f"{p}/creators", create_creator),
        web.get(f"{p}/creators/{{username}}", get_creator),
        web.patch(f"{p}/creators/{{username}}", patch_creator),
        web.post(f"{p}/tokens", issue_token),
        web.post(f"{p}/tokens/expire", expire_token),
        web.post(f"{p}/tokens/revoke", revoke_token),
        web.get(f"{p}/time", get_time),
        web.post(f"{p}/time", set_time),
        web.get(f"{p}/faults", list_faults),
        web.post(f"{p}/faults", add_fault),
        web.delete(f"{p}/faults", clear_faults),
        web.get(f"{p}/posts", list_posts),
        web.get(f"{p}/posts/{{publish_id}}", get_post),
        web.post(f"{p}/posts/{{publish_id}}/user_post", user_posts_draft),
        web.post(f"{p}/posts/{{publish_id}}/moderate", finish_moderation),
        web.post(f"{p}/posts/{{publish_id}}/fail", fail_post),
        web.get(f"{p}/calls", calls),
        web.delete(f"{p}/calls", clear_calls),
        web.get(f"{p}/events", events),
        web.get(f"{p}/webhooks", webhooks),
        web.get(f"{p}/secrets", issued_secrets),
    ]
