"""The consumer of ``tiktok.token.refresh-requested``: the shared consume loop, set up for auth.

Offsets are committed only after the refresher is done with a record. A record that can't be decoded
is logged and skipped (it will never decode); a transient failure (database down) is retried with
backoff on the same record, so nothing is skipped and order per account is kept (``ConsumeLoop``).
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from common.backoff import Backoff
from common.events import Envelope, EventType, RefreshRequestedData, decode
from common.kafka import TOPIC_TOKEN_REFRESH_REQUESTED, ConsumeLoop, Consumer, ConsumerRecord
from common.kafka.consume import EachHandler, Undecodable

log = structlog.get_logger(__name__)

RefreshRequest = Envelope[RefreshRequestedData]


def decode_request(record: ConsumerRecord[bytes, bytes]) -> RefreshRequest:
    return decode(record.value, RefreshRequestedData, expected_type=EventType.refresh_requested)


def log_invalid(item: Undecodable) -> None:
    log.warning(
        "refresh_request_invalid",
        error_code=item.error.code,
        error=item.error.message,
        partition=item.record.partition,
        offset=item.record.offset,
    )


def skip_invalid(item: Undecodable, on_bad: Callable[[str, str], None] | None) -> None:
    """Logged, and counted as ``state_event_bad{topic,code}``: it will never decode, so it is skipped."""
    log_invalid(item)
    if on_bad is not None:
        on_bad(item.record.topic, item.error.code)


def refresh_request_loop(
    bootstrap_servers: str,
    topic_prefix: str,
    group_id: str,
    handler: EachHandler[RefreshRequest],
    *,
    client_id: str | None = None,
    backoff: Backoff | None = None,
    on_lag: Callable[[str, int, int | None], None] | None = None,
    on_bad: Callable[[str, str], None] | None = None,
) -> ConsumeLoop[RefreshRequest]:
    consumer = Consumer(
        bootstrap_servers,
        [topic_prefix + TOPIC_TOKEN_REFRESH_REQUESTED],
        group_id=group_id,
        client_id=client_id,
        max_poll_records=100,
    )
    return ConsumeLoop.each(
        "refresh-requests",
        consumer,
        decode_request,
        handler,
        backoff=backoff or Backoff(initial=0.5, maximum=30.0, jitter=0.5),
        on_lag=on_lag,
        on_undecodable=lambda item: skip_invalid(item, on_bad),
    )
