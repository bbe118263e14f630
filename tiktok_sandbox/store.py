"""All sandbox state and the rules that change it: apps, creators, OAuth grants and tokens here; posts
and their timeline in ``timeline.PostTimeline``, which ``Store`` mixes in.

No HTTP here. Handlers call these methods and translate the errors they raise. Everything reads
time from the `Clock`; post transitions are computed lazily from timestamps (`advance`) by whoever
looks first (a status fetch, introspection or the app's ticker), and each transition emits its
webhook event exactly once.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from . import ids, rules
from .clock import Clock
from .config import ALL_SCOPES, AppSeed, CreatorSeed, SandboxConfig
from .errors import ApiError, ControlError, OAuthError
from .faults import FaultBook
from .limits import CallLog
from .models import (
    AccessToken,
    App,
    AuthCode,
    Creator,
    Event,
    Grant,
    PendingAuthorization,
    Post,
    RefreshToken,
)
from .timeline import EventSink, PostTimeline


class _NoSink:
    def deliver(self, app: AppSeed, event: Event) -> None:
        return None


class Store(PostTimeline):
    def __init__(self, config: SandboxConfig, clock: Clock, data_dir: Path | None = None) -> None:
        self.config = config
        self.clock = clock
        self.data_dir = data_dir
        self.sink: EventSink = _NoSink()
        # Called when a post's transfer must stop (cancel, timeout, revoke); set by the puller.
        self.on_abort_transfer: Callable[[str], None] = lambda publish_id: None
        self.reset()

    def reset(self) -> None:
        self.apps: dict[str, App] = {}
        self.creators: dict[str, Creator] = {}
        self.grants: dict[int, Grant] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.client_tokens: dict[str, tuple[str, float]] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.code_verifiers: list[str] = []  # every PKCE verifier a client sent (for leak tests)
        self.pending_auth: dict[str, PendingAuthorization] = {}
        self.posts: dict[str, Post] = {}
        self.uploads: dict[str, Post] = {}
        self.events: list[Event] = []
        self.calls = CallLog(self.config.rate_window_s, self.config.rate_window_kind)
        self.faults = FaultBook()
        self.seq = ids.Sequences()
        self._grant_ids = itertools.count(1)
        for app in self.config.apps:
            self.create_app(app)
        for creator in self.config.creators:
            self.create_creator(creator)

    def now(self) -> float:
        return self.clock.now()

    # ---- apps and creators -----------------------------------------------------------------------

    def create_app(self, seed: AppSeed) -> App:
        if seed.client_key in self.apps:
            raise ControlError(409, f"app {seed.client_key} exists")
        self._check_app(seed)
        app = App(seed)
        self.apps[seed.client_key] = app
        return app

    def update_app(self, client_key: str, changes: dict[str, Any]) -> App:
        app = self.app(client_key)
        seed = dataclasses.replace(app.seed, **changes)
        self._check_app(seed)
        app.seed = seed
        return app

    def _check_app(self, seed: AppSeed) -> None:
        if len(seed.redirect_uris) > 10:
            raise ControlError(400, "at most 10 redirect URIs")
        for uri in seed.redirect_uris:
            lenient = self.config.allow_http_web_redirects and uri.startswith("http://")
            checked = "https://" + uri.removeprefix("http://") if lenient else uri
            err = rules.redirect_uri_error(checked, seed.app_type)
            if err:
                raise ControlError(400, err)
        for prefix in seed.verified_url_prefixes:
            err = rules.prefix_property_error(
                prefix, allow_http=self.config.pull_allow_http, allow_ip=self.config.allow_ip_prefixes
            )
            if err:
                raise ControlError(400, err)
        unknown = set(seed.scopes) - set(ALL_SCOPES)
        if unknown:
            raise ControlError(400, f"unknown scopes {sorted(unknown)}")

    def app(self, client_key: str) -> App:
        try:
            return self.apps[client_key]
        except KeyError:
            raise ControlError(404, f"no app {client_key}") from None

    def create_creator(self, seed: CreatorSeed) -> Creator:
        if seed.username in self.creators:
            raise ControlError(409, f"creator {seed.username} exists")
        creator = Creator(seed, union_id=ids.open_id())
        self.creators[seed.username] = creator
        return creator

    def update_creator(self, username: str, changes: dict[str, Any]) -> Creator:
        creator = self.creator(username)
        creator.seed = dataclasses.replace(creator.seed, **changes)
        return creator

    def creator(self, username: str) -> Creator:
        try:
            return self.creators[username]
        except KeyError:
            raise ControlError(404, f"no creator {username}") from None

    def open_id(self, creator: Creator, client_key: str) -> str:
        return creator.open_ids.setdefault(client_key, ids.open_id())

    # ---- OAuth -------------------------------------------------------------------------------------

    def client(self, client_key: str | None, client_secret: str | None) -> App:
        if not client_key:
            raise OAuthError("invalid_request", "Client key is missed in request.")
        if not client_secret:
            raise OAuthError("invalid_request", "Client secret is missed in request.")
        app = self.apps.get(client_key)
        if app is None or not secrets.compare_digest(app.seed.client_secret, client_secret):
            raise OAuthError("invalid_client", "Client key or secret is invalid.")
        return app

    def issue_code(self, pending: PendingAuthorization, username: str, scopes: tuple[str, ...]) -> str:
        code = ids.auth_code()
        self.codes[code] = AuthCode(
            code=code,
            client_key=pending.client_key,
            username=username,
            scopes=scopes,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            expires_at=self.now() + self.config.auth_code_ttl_s,
        )
        return code

    def exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        app = self.client(form.get("client_key"), form.get("client_secret"))
        code_value, redirect_uri = form.get("code"), form.get("redirect_uri")
        if not code_value or not redirect_uri:
            raise OAuthError("invalid_request", "The request parameters are malformed.")
        code = self.codes.get(code_value)
        if code is None or code.client_key != app.client_key:
            raise OAuthError("invalid_grant", "Authorization code is invalid.")
        if code.used:
            raise OAuthError("invalid_grant", "Authorization code has been used.")
        if self.now() >= code.expires_at:
            raise OAuthError("invalid_grant", "Authorization code is expired.")
        if code.redirect_uri != redirect_uri:
            raise OAuthError(
                "invalid_grant", "Redirect_uri is not matched with the uri when requesting code."
            )
        verifier = form.get("code_verifier")
        if verifier:
            self.code_verifiers.append(verifier)
        needs_pkce = app.seed.app_type == "desktop" or not self.config.web_ignores_code_verifier
        lenient = self.config.pkce_encodings == "hex+base64url"
        if (
            needs_pkce
            and code.code_challenge is not None
            and not (verifier and rules.pkce_matches(verifier, code.code_challenge, allow_base64url=lenient))
        ):
            raise OAuthError("invalid_grant", "Code verifier or code challenge is invalid.")
        code.used = True
        creator = self.creator(code.username)
        now = self.now()
        grant = Grant(
            grant_id=next(self._grant_ids),
            client_key=app.client_key,
            username=creator.username,
            open_id=self.open_id(creator, app.client_key),
            scopes=code.scopes,
            created_at=now,
            refresh_expires_at=now + self.config.refresh_ttl,
        )
        self.grants[grant.grant_id] = grant
        return self._token_response(grant, self._new_refresh(grant))

    def grant_directly(self, client_key: str, username: str, scopes: Iterable[str]) -> dict[str, Any]:
        """Test shortcut: what a completed OAuth flow would return, without the browser."""
        app = self.app(client_key)
        creator = self.creator(username)
        wanted = tuple(scopes)
        missing = set(wanted) - set(app.seed.scopes)
        if missing:
            raise ControlError(400, f"app is not approved for {sorted(missing)}")
        now = self.now()
        grant = Grant(
            grant_id=next(self._grant_ids),
            client_key=client_key,
            username=username,
            open_id=self.open_id(creator, client_key),
            scopes=wanted,
            created_at=now,
            refresh_expires_at=now + self.config.refresh_ttl,
        )
        self.grants[grant.grant_id] = grant
        return self._token_response(grant, self._new_refresh(grant))

    def _new_refresh(self, grant: Grant) -> RefreshToken:
        if self.config.refresh_expiry_slides:
            grant.refresh_expires_at = self.now() + self.config.refresh_ttl
        rt = RefreshToken(ids.refresh_token(), grant, grant.refresh_expires_at)
        self.refresh_tokens[rt.token] = rt
        return rt

    def _token_response(self, grant: Grant, rt: RefreshToken) -> dict[str, Any]:
        now = self.now()
        at = AccessToken(ids.access_token(), grant, now + self.config.access_ttl)
        self.access_tokens[at.token] = at
        answer = {
            "access_token": at.token,
            "expires_in": self.config.access_ttl,
            "open_id": grant.open_id,
            "refresh_expires_in": max(0, round(rt.expires_at - now)),
            "refresh_token": rt.token,
            "scope": ",".join(grant.scopes),
            "token_type": "Bearer",
        }
        if not self.config.token_includes_refresh_expires_in:
            del answer["refresh_expires_in"]
        return answer

    def refresh(self, form: dict[str, str]) -> dict[str, Any]:
        app = self.client(form.get("client_key"), form.get("client_secret"))
        value = form.get("refresh_token")
        if not value:
            raise OAuthError("invalid_request", "The request parameters are malformed.")
        rt = self.refresh_tokens.get(value)
        if rt is None or rt.grant.client_key != app.client_key or not rt.valid(self.now()):
            raise OAuthError("invalid_grant", "Refresh token is invalid or expired.")
        rotation = self.config.refresh_rotation
        rotate = rotation == "always" or (
            rotation == "sometimes"
            and secrets.randbelow(1_000_000) < self.config.refresh_rotation_probability * 1_000_000
        )
        if self.config.old_access_token_after_refresh == "revoked":  # noqa: S105
            for at in self.access_tokens.values():
                if at.grant is rt.grant:
                    at.revoked = True
        if rotate:
            rt.dead = True
            rt = self._new_refresh(rt.grant)
        elif self.config.refresh_expiry_slides:
            rt.expires_at = self.now() + self.config.refresh_ttl
        return self._token_response(rt.grant, rt)

    def client_credentials(self, form: dict[str, str]) -> dict[str, Any]:
        self.client(form.get("client_key"), form.get("client_secret"))
        token = ids.client_token()
        self.client_tokens[token] = (form["client_key"], self.now() + self.config.client_credentials_ttl_s)
        return {
            "access_token": token,
            "expires_in": self.config.client_credentials_ttl_s,
            "token_type": "Bearer",
        }

    def revoke(self, form: dict[str, str]) -> None:
        app = self.client(form.get("client_key"), form.get("client_secret"))
        at = self.access_tokens.get(form.get("token") or "")
        if at is None or at.grant.client_key != app.client_key or not at.valid(self.now()):
            raise OAuthError("invalid_request", "Access token is invalid or expired.")
        self.remove_authorization(at.grant, reason=5)

    def remove_authorization(self, grant: Grant, reason: int) -> None:
        """Kill a grant (every token under it), fail its in-flight posts and emit the webhook."""
        if grant.revoked:
            return
        grant.revoked = True
        for post in self.posts.values():
            if post.grant_id == grant.grant_id and post.status in (
                "PROCESSING_UPLOAD",
                "PROCESSING_DOWNLOAD",
            ):
                self.fail(post, "auth_removed")
        self.emit(grant.client_key, grant.open_id, "authorization.removed", {"reason": reason})

    def authenticate(self, header: str | None) -> AccessToken:
        """§9.2 step 1."""
        token = self.bearer(header)
        at = self.access_tokens.get(token or "")
        if at is None or not at.valid(self.now()):
            raise ApiError(
                401, "access_token_invalid", "The access token is invalid or not found in the request."
            )
        return at

    @staticmethod
    def bearer(header: str | None) -> str | None:
        if header and header[:7].lower() == "bearer ":
            return header[7:].strip() or None
        return None

    def require_scope(self, at: AccessToken, *scopes: str) -> None:
        """§9.2 step 2: any one of `scopes` suffices."""
        if not set(scopes) & set(at.grant.scopes):
            raise ApiError(
                401,
                "scope_not_authorized",
                "The user did not authorize the scope required for this endpoint.",
            )

    def rate_limit(self, at: AccessToken, endpoint: str) -> None:
        """§9.2 step 3."""
        if not self.calls.try_acquire(at.token, endpoint, self.config.rate_limit_for(endpoint), self.now()):
            raise ApiError(429, "rate_limit_exceeded", "API rate limit was exceeded, please try again later.")
