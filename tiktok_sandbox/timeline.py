"""Posts and their timeline in the sandbox's state: uploads, processing, moderation and the webhook
event of each transition (§9.4), the control API's actions on a post, and its description.

``PostTimeline`` is mixed into ``Store``, which owns the state it reads (``posts``, ``uploads``,
``events``...) and the apps, creators and clock it consults.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from . import ids
from .config import AppSeed, SandboxConfig
from .errors import ControlError
from .models import App, Creator, Event, Post, ReceivedFile, UploadTask

MIB512 = 512 * 1024 * 1024


class EventSink(Protocol):
    def deliver(self, app: AppSeed, event: Event) -> None: ...


class PostTimeline:
    config: SandboxConfig
    data_dir: Path | None
    posts: dict[str, Post]
    uploads: dict[str, Post]
    events: list[Event]
    apps: dict[str, App]
    seq: ids.Sequences
    sink: EventSink
    on_abort_transfer: Callable[[str], None]

    # Store's own: its clock and its app and creator lookups.
    def now(self) -> float:
        raise NotImplementedError

    def app(self, client_key: str) -> App:
        raise NotImplementedError

    def creator(self, username: str) -> Creator:
        raise NotImplementedError

    # ---- posts and their timeline ------------------------------------------------------------------

    def new_post(self, **kwargs: Any) -> Post:
        post = Post(**kwargs)
        post.status_history.append((post.created_at, post.status))
        self.posts[post.publish_id] = post
        return post

    def new_upload(self, post: Post, video_size: int, chunk_size: int, total: int) -> UploadTask:
        task = UploadTask(
            upload_id=secrets.token_hex(16),
            upload_token=secrets.token_urlsafe(24),
            video_size=video_size,
            chunk_size=chunk_size,
            total_chunks=total,
            expires_at=self.now() + self.config.upload_url_ttl_s,
            file=self.new_file(post, 0),
        )
        post.upload = task
        post.files.append(task.file)
        self.uploads[task.upload_id] = post
        return task

    def new_file(self, post: Post, index: int, source_url: str | None = None) -> ReceivedFile:
        if self.data_dir is None:
            raise RuntimeError("the sandbox has no data dir yet (app not started)")
        safe = hashlib.sha256(post.publish_id.encode()).hexdigest()[:24]
        return ReceivedFile(path=self.data_dir / f"{safe}-{index}.bin", source_url=source_url)

    def processing_delay(self, size: int) -> float:
        return max(self.config.processing_min_s, size / MIB512 * self.config.processing_s_per_512mib)

    def transfer_finished(self, post: Post) -> None:
        """All bytes arrived (last chunk 201, or every pull done): processing starts now."""
        now = self.now()
        post.transfer_done_at = now
        post.processing_until = now + self.processing_delay(post.total_bytes)

    def set_status(self, post: Post, status: str, at: float | None = None) -> None:
        post.status = status
        post.status_history.append((self.now() if at is None else at, status))

    def fail(self, post: Post, reason: str) -> None:
        if post.status in ("FAILED", "PUBLISH_COMPLETE"):
            return
        self.set_status(post, "FAILED")
        post.fail_reason = reason
        self.on_abort_transfer(post.publish_id)
        self.emit_post(post, "post.publish.failed", reason=reason)

    def publish_type(self, post: Post) -> str:
        return "INBOX_SHARE" if post.post_mode == "MEDIA_UPLOAD" else self.config.direct_post_publish_type

    def emit_post(self, post: Post, event: str, **extra: Any) -> None:
        content = {"publish_id": post.publish_id, **extra, "publish_type": self.publish_type(post)}
        self.emit(post.client_key, post.open_id, event, content)

    def emit(self, client_key: str, open_id: str, name: str, content: dict[str, Any]) -> None:
        event = Event(name, client_key, open_id, int(self.now()), content)
        self.events.append(event)
        app = self.apps.get(client_key)
        if app is not None:
            self.sink.deliver(app.seed, event)

    def advance(self, post: Post) -> None:
        """Apply every transition whose time has come (§9.4), emitting each event once."""
        now = self.now()
        for _ in range(4):  # each pass moves at most one step; four covers the longest chain
            if post.status in ("PROCESSING_UPLOAD", "PROCESSING_DOWNLOAD"):
                upload = post.upload
                if (
                    upload is not None
                    and not upload.complete
                    and now >= upload.expires_at
                    and not upload.busy
                ):
                    self.fail(post, self.config.upload_expired_fail_reason)
                elif (
                    post.source == "PULL_FROM_URL"
                    and post.transfer_done_at is None
                    and post.download_started_at is not None
                    and now >= post.download_started_at + self.config.pull_timeout_s
                ):
                    self.fail(
                        post, "photo_pull_failed" if post.media_type == "PHOTO" else "video_pull_failed"
                    )
                elif post.processing_until is not None and now >= post.processing_until:
                    self._finish_processing(post, post.processing_until)
                else:
                    return
            elif (
                post.status == "PUBLISH_COMPLETE"
                and post.moderation_until is not None
                and not post.post_ids
                and now >= post.moderation_until
            ):
                post.post_ids.append(self.seq.post_id())
                self.emit_post(post, "post.publish.publicly_available", post_id=str(post.post_ids[-1]))
            else:
                return

    def _finish_processing(self, post: Post, at: float) -> None:
        if post.forced_fail_reason:
            self.fail(post, post.forced_fail_reason)
            return
        if post.post_mode == "MEDIA_UPLOAD":
            self.set_status(post, "SEND_TO_USER_INBOX", at)
            self.emit_post(post, "post.publish.inbox_delivered")
            return
        self.complete(post, at)

    def complete(self, post: Post, at: float) -> None:
        self.set_status(post, "PUBLISH_COMPLETE", at)
        post.completed_at = at
        self.emit_post(post, "post.publish.complete")
        if post.effective_privacy in self.config.public_privacy_levels:
            post.moderation_until = at + self.config.moderation_delay_s

    def advance_all(self) -> None:
        for post in list(self.posts.values()):
            if not post.terminal:
                self.advance(post)

    # ---- control-side post actions -----------------------------------------------------------------

    def post_for_control(self, publish_id: str) -> Post:
        post = self.posts.get(publish_id)
        if post is None:
            raise ControlError(404, f"no post {publish_id}")
        self.advance(post)
        return post

    def user_posts_draft(self, post: Post, privacy_level: str | None) -> None:
        if post.status != "SEND_TO_USER_INBOX":
            raise ControlError(409, f"post is {post.status}, not SEND_TO_USER_INBOX")
        creator = self.creator(post.username)
        level = privacy_level or creator.privacy_options()[0]
        app = self.app(post.client_key)
        post.effective_privacy = level if app.seed.audited else "SELF_ONLY"
        self.complete(post, self.now())
        self.advance(post)

    def finish_moderation(self, post: Post) -> None:
        if post.status != "PUBLISH_COMPLETE" or post.moderation_until is None:
            raise ControlError(409, "post is not public and complete")
        post.moderation_until = min(post.moderation_until, self.now())
        self.advance(post)

    def force_fail(self, post: Post, reason: str, when: str) -> None:
        if post.status in ("FAILED", "PUBLISH_COMPLETE"):
            raise ControlError(409, f"post is already {post.status}")
        if when == "now":
            self.fail(post, reason)
        else:
            post.forced_fail_reason = reason

    # ---- introspection -----------------------------------------------------------------------------

    def describe(self, post: Post) -> dict[str, Any]:
        upload = post.upload
        return {
            "publish_id": post.publish_id,
            "client_key": post.client_key,
            "creator": post.username,
            "open_id": post.open_id,
            "media_type": post.media_type,
            "post_mode": post.post_mode,
            "source": post.source,
            "status": post.status,
            "fail_reason": post.fail_reason,
            "requested_privacy_level": post.requested_privacy,
            "effective_privacy_level": post.effective_privacy,
            "effective_options": post.effective_options,
            "post_info": post.post_info,
            "source_info": post.source_info,
            "created_at": post.created_at,
            "publicaly_available_post_id": [str(i) for i in post.post_ids],
            "uploaded_bytes": upload.received if upload else 0,
            "downloaded_bytes": post.downloaded_bytes,
            "upload": None
            if upload is None
            else {
                "video_size": upload.video_size,
                "chunk_size": upload.chunk_size,
                "total_chunk_count": upload.total_chunks,
                "chunks_received": upload.next_index,
                "expires_at": upload.expires_at,
            },
            "files": [
                {"size": f.size, "sha256": f.sha256, "source_url": f.source_url, "path": str(f.path)}
                for f in post.files
            ],
            "size": post.total_bytes,
            "sha256": post.files[0].sha256 if len(post.files) == 1 else None,
            "history": [{"at": at, "status": s} for at, s in post.status_history],
        }
