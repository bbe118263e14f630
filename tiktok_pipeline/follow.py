"""Reading ``tiktok.post.status``: follow one post to its end, or tail every post.

Both read the topic without a consumer group (nothing is committed; an operator's terminal must not
steal partitions from a dashboard's group), from the beginning or from now.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import errors as ak_errors
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from common.errors import PipelineError
from common.events import BadEvent, Envelope, PostState, PostStatusData, decode
from common.kafka import translate_error
from common.kafka.clients import new_consumer


@dataclass
class Timeline:
    """What one post went through, as a summary can print it."""

    post_id: str
    events: list[tuple[float, PostStatusData]] = field(default_factory=list)

    @property
    def last(self) -> PostStatusData | None:
        return self.events[-1][1] if self.events else None

    def add(self, at: float, data: PostStatusData) -> None:
        self.events.append((at, data))


async def status_records(
    bootstrap: str, topic: str, *, from_beginning: bool = True, idle_timeout: float | None = None
) -> AsyncIterator[tuple[bytes | None, bytes | None]]:
    """Yield ``(key, value)`` of every record on the status topic, forever or until idle."""
    consumer = new_consumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        group_id=None,
    )
    try:
        await consumer.start()
    except ak_errors.KafkaError as exc:
        await consumer.stop()  # a consumer that failed to start still holds a client to close
        raise translate_error(exc) from exc
    try:
        if topic not in await consumer.topics():
            raise PipelineError(f"topic {topic} does not exist (run: tiktok-pipeline create-topics)")
        # Without a group, subscribing assigns every partition; with no committed offsets the start
        # is auto_offset_reset: the beginning or the end.
        consumer.subscribe([topic])
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch and idle_timeout is not None:
                idle_timeout -= 0.5
                if idle_timeout <= 0:
                    return
            for records in batch.values():
                for record in records:
                    yield record.key, record.value
    finally:
        await consumer.stop()


async def follow_post(
    bootstrap: str,
    topic: str,
    post_id: str,
    *,
    within: float,
    on_event: Callable[[Envelope[PostStatusData]], None] | None = None,
    until: Callable[[PostStatusData], bool] = lambda d: d.state.terminal,
) -> Timeline:
    """Follow ``post_id`` until ``until`` holds (a terminal state by default) or ``within`` seconds pass."""
    timeline = Timeline(post_id)
    seen: set[str] = set()
    key = post_id.encode()

    async def run() -> None:
        async for record_key, value in status_records(bootstrap, topic):
            if record_key != key:
                continue
            try:
                envelope = decode(value, PostStatusData)
            except BadEvent:
                continue
            if str(envelope.event_id) in seen:  # at-least-once delivery: drop repeats
                continue
            seen.add(str(envelope.event_id))
            timeline.add(time.monotonic(), envelope.data)
            if on_event is not None:
                on_event(envelope)
            if until(envelope.data):
                return

    try:
        await asyncio.wait_for(run(), within)
    except TimeoutError:
        state = timeline.last.state if timeline.last else "no status event"
        raise TimeoutError(f"post {post_id} did not finish within {within:.0f}s (last: {state})") from None
    return timeline


def is_done(data: PostStatusData) -> bool:
    """Terminal, and if published also carrying its TikTok post id.

    Only for public posts: TikTok gives private (SELF_ONLY) posts no public id, ever.
    """
    return data.state.terminal and (data.state is not PostState.published or bool(data.tiktok_post_ids))


def bytes_progress(console: Console, label: str = "{task.description}", *, disable: bool = False) -> Progress:
    """The progress bar of an upload or a followed post: label, bar, bytes, speed."""
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, console=console, disable=disable)
