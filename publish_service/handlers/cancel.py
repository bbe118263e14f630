"""Cancelling a post at the caller's request: only before TikTok has heard of it."""

from __future__ import annotations

from common.errors import Conflict, NotFound
from common.events import ErrorInfo, PostState
from publish_service.domain.post import LeaseLost, PostRow
from publish_service.handlers.ports import Transitions

CANCELLABLE = frozenset({PostState.received, PostState.scheduled})


class Cancellation:
    def __init__(self, repo: Transitions) -> None:
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
