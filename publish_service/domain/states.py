"""The post state machine: which transitions are legal, and what each state means for the worker.

A post moves ``received → (scheduled →) validating → uploading → processing → published``, or to
``inbox_delivered`` for drafts, ``failed`` when TikTok or the media says no for good, ``rejected``
for input we will never accept. ``published`` is terminal for the state, but a public post is still
watched for its public post id (``awaiting_post_id`` on the row), which is emitted as an update.
"""

from __future__ import annotations

from common.events import PostState

S = PostState

TRANSITIONS: dict[PostState, frozenset[PostState]] = {
    S.received: frozenset({S.scheduled, S.validating, S.rejected, S.cancelled}),
    S.scheduled: frozenset({S.validating, S.rejected, S.cancelled}),
    # validating may go straight to processing for PULL_FROM_URL (the init is the transfer).
    S.validating: frozenset({S.uploading, S.processing, S.rejected, S.failed, S.cancelled, S.validating}),
    S.uploading: frozenset({S.processing, S.failed, S.rejected, S.validating, S.uploading}),
    # processing → validating: TikTok reported a retryable failure (fail_reason internal), start over.
    S.processing: frozenset({S.published, S.inbox_delivered, S.failed, S.validating}),
    # A draft that the creator posts from the TikTok app later becomes published; one TikTok fails, or
    # that is not posted within the draft's lifetime (error code draft_expired), becomes failed.
    S.inbox_delivered: frozenset({S.published, S.failed}),
    S.published: frozenset({S.published}),  # the public post id arrived: an update in the same state
    S.failed: frozenset(),
    S.rejected: frozenset(),
    S.cancelled: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: PostState, target: PostState) -> None:
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"a post cannot go from {current} to {target}")


def is_legal(current: PostState, target: PostState) -> bool:
    return target in TRANSITIONS[current]
