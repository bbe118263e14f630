"""What the HTTP API shows of a post."""

from __future__ import annotations

from typing import Any

from publish_service.domain.post import PostRow


def post_view(post: PostRow) -> dict[str, Any]:
    """What ``GET /v1/posts/{id}`` shows: state and TikTok ids, never the upload URL."""
    return {
        "post_id": post.post_id,
        "account_id": post.account_id,
        "state": post.state.value,
        "seq": post.seq,
        "attempt": post.attempt,
        "kind": post.request.kind.value,
        "mode": post.request.mode.value,
        "transfer": post.request.transfer.value,
        "publish_at": post.publish_at.isoformat() if post.publish_at else None,
        "next_attempt_at": post.next_attempt_at.isoformat(),
        "progress": {"bytes_sent": post.bytes_acked, "bytes_total": post.media_size}
        if post.media_size
        else None,
        "publish_id": post.publish_id,
        "tiktok_status": post.tiktok_status,
        "tiktok_post_ids": list(post.tiktok_post_ids),
        "awaiting_post_id": post.awaiting_post_id,
        "error": {
            "code": post.error_code,
            "message": post.error_message,
            "retryable": bool(post.error_retryable),
            "tiktok_log_id": post.error_log_id,
        }
        if post.error_code
        else None,
        "metadata": post.request.metadata,
        "created_at": post.created_at.isoformat(),
        "updated_at": post.updated_at.isoformat(),
    }
