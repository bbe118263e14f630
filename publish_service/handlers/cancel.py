"""Cancelling a post at the caller's request: only before TikTok has heard of it."""

from __future__ import annotations

from typing import Protocol

from common.errors import Conflict, NotFound
from common.events import ErrorInfo, PostState, Progress
from publish_service.adapters.pg import LeaseLost
from publish_service.domain.post import PostPatch, PostRow

CANCELLABLE = frozenset({PostState.received, PostState.scheduled})


class CancelStore(Protocol):
    async def get(self, post_id: str) -> PostRow | None: ...
    async def transition(
        self,
        row: PostRow,
        target: PostState,
        *,
        owner: str | None,
        progress: Progress | None = None,
        error: ErrorInfo | None = None,
        patch: PostPatch | None = None,
    ) -> PostRow: ...


class Cancellation:
    def __init__(self, repo: CancelStore) -> None:
        self.repo = repo

    async def cancel(self, post_id: str) -> PostRow:
        """The cancelled post (also when it was cancelled before); 404 unknown, 409 once work began."""
        post = await self.repo.get(post_id)
        if post is None:
            raise NotFound(f"no post {post_id!r}")
        if post.state is PostState.cancelled:
            return post
        if post.state not in CANCELLABLE:
            raise Conflict(
                f"the post is {post.state.value}; only received or scheduled posts can be cancelled"
            )
        try:
            return await self.repo.transition(
                post,
                PostState.cancelled,
                owner=None,
                error=ErrorInfo(code="cancelled", message="cancelled by the caller"),
            )
        except LeaseLost as exc:
            raise Conflict("the post started publishing just now; it can no longer be cancelled") from exc
