"""Reading ``tiktok.post.metrics``: one post's series of counts (``tiktok-pipeline metrics``) and
its latest counts (shown by ``follow`` after ``published``). No consumer group, nothing committed."""

from __future__ import annotations

from datetime import datetime

from rich.table import Table

from common.events import BadEvent, PostMetricsData, decode
from tiktok_pipeline.follow import status_records


async def metrics_series(
    bootstrap: str, topic: str, post_id: str, *, idle_s: float = 2.0
) -> list[PostMetricsData]:
    """Every metrics event of ``post_id`` on the topic, one per slot (a redelivery counts once)."""
    key = post_id.encode()
    by_slot: dict[int, PostMetricsData] = {}
    async for record_key, value in status_records(bootstrap, topic, idle_timeout=idle_s):
        if record_key != key or value is None:
            continue
        try:
            data = decode(value, PostMetricsData).data
        except BadEvent:
            continue
        by_slot.setdefault(data.slot, data)
    return [by_slot[s] for s in sorted(by_slot)]


def _after(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def series_table(post_id: str, series: list[PostMetricsData]) -> Table:
    table = Table("slot", "after", "fetched at (UTC)", "views", "likes", "comments", "shares", "note",
                  title=f"metrics of post {post_id}")  # fmt: skip
    for data in series:
        table.add_row(
            str(data.slot),
            _after(data.slot_after_s),
            _when(data.fetched_at),
            _count(data.view_count),
            _count(data.like_count),
            _count(data.comment_count),
            _count(data.share_count),
            data.insights_unavailable.value if data.insights_unavailable else "",
        )
    return table


def latest_line(series: list[PostMetricsData]) -> str:
    """One line for ``follow``: the newest counts, or why there are none."""
    if not series:
        return "metrics: none yet (the first fetch is due 1 h after publishing by default)"
    last = series[-1]
    if last.insights_unavailable is not None:
        return f"metrics: unavailable ({last.insights_unavailable.value}) since {_when(last.fetched_at)}"
    return (
        f"metrics at {_when(last.fetched_at)} (+{_after(last.slot_after_s)}): "
        f"{_count(last.view_count)} views, {_count(last.like_count)} likes, "
        f"{_count(last.comment_count)} comments, {_count(last.share_count)} shares"
    )


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")
