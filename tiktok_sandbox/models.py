"""Mutable sandbox state: apps, creators, grants, tokens, posts. Plain data; rules live in store.py."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import AppSeed, CreatorSeed

TERMINAL = ("PUBLISH_COMPLETE", "FAILED")


@dataclass
class App:
    seed: AppSeed
    active_publishers: dict[str, float] = field(default_factory=dict)  # creator username -> last post

    @property
    def client_key(self) -> str:
        return self.seed.client_key


@dataclass
class Creator:
    seed: CreatorSeed
    union_id: str
    open_ids: dict[str, str] = field(default_factory=dict)  # client_key -> open_id
    direct_posts: list[float] = field(default_factory=list)  # timestamps, shared across apps

    @property
    def username(self) -> str:
        return self.seed.username

    def privacy_options(self) -> list[str]:
        if self.seed.privacy_level_options is not None:
            return list(self.seed.privacy_level_options)
        if self.seed.private:
            return ["FOLLOWER_OF_CREATOR", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]
        return ["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "SELF_ONLY"]


@dataclass
class Grant:
    """One user's authorization of one app; revoking it kills every token issued under it."""

    grant_id: int
    client_key: str
    username: str
    open_id: str
    scopes: tuple[str, ...]
    created_at: float
    refresh_expires_at: float
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    grant: Grant
    expires_at: float
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and not self.grant.revoked and now < self.expires_at


@dataclass
class RefreshToken:
    token: str
    grant: Grant
    expires_at: float
    dead: bool = False

    def valid(self, now: float) -> bool:
        return not self.dead and not self.grant.revoked and now < self.expires_at


@dataclass
class AuthCode:
    code: str
    client_key: str
    username: str
    scopes: tuple[str, ...]
    redirect_uri: str
    code_challenge: str | None
    expires_at: float
    used: bool = False


@dataclass
class PendingAuthorization:
    """An authorize request waiting on the consent page's form POST."""

    request_id: str
    client_key: str
    scopes: tuple[str, ...]
    redirect_uri: str
    state: str
    code_challenge: str | None
    expires_at: float


@dataclass
class ReceivedFile:
    """Bytes that arrived for a post, hashed while they streamed in."""

    path: Path
    size: int = 0
    sha256: str | None = None
    source_url: str | None = None


@dataclass
class UploadTask:
    upload_id: str
    upload_token: str
    video_size: int
    chunk_size: int
    total_chunks: int
    expires_at: float
    file: ReceivedFile
    received: int = 0
    next_index: int = 0
    busy: bool = False
    hasher: Any = field(default_factory=hashlib.sha256)

    @property
    def complete(self) -> bool:
        return self.received >= self.video_size


@dataclass
class Event:
    event: str
    client_key: str
    user_openid: str
    create_time: int
    content: dict[str, Any]


@dataclass
class Post:
    publish_id: str
    media_type: Literal["VIDEO", "PHOTO"]
    post_mode: Literal["DIRECT_POST", "MEDIA_UPLOAD"]
    source: Literal["FILE_UPLOAD", "PULL_FROM_URL"]
    client_key: str
    username: str
    open_id: str
    grant_id: int
    created_at: float
    post_info: dict[str, Any]
    source_info: dict[str, Any]
    requested_privacy: str | None
    effective_privacy: str | None
    status: str
    effective_options: dict[str, bool] = field(default_factory=dict)
    fail_reason: str | None = None
    upload: UploadTask | None = None
    files: list[ReceivedFile] = field(default_factory=list)
    downloaded_bytes: int = 0
    download_started_at: float | None = None
    transfer_done_at: float | None = None
    processing_until: float | None = None
    completed_at: float | None = None
    moderation_until: float | None = None
    post_ids: list[int] = field(default_factory=list)
    forced_fail_reason: str | None = None
    status_history: list[tuple[float, str]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.status == "FAILED" or (
            self.status == "PUBLISH_COMPLETE" and (self.moderation_until is None or bool(self.post_ids))
        )

    @property
    def pending_share(self) -> bool:
        return self.post_mode == "MEDIA_UPLOAD" and self.status not in TERMINAL

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)
