"""Dead letters: a refused request's bytes go to the DLQ topic through the outbox, with why."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from common.outbox import DEFAULT_MAX_RECORD_BYTES, OutboxRecord, enqueue
from publish_service.adapters.pg import Executor


def dlq_headers(code: str, message: str, extra: Sequence[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    return [("error_code", code.encode()), ("error_message", message[:1000].encode()), *extra]


class DeadLetters:
    def __init__(self, schema: str, topic: str, on_letter: Callable[[str], None] | None = None) -> None:
        self._schema = schema
        self._topic = topic
        self._on_letter = on_letter or (lambda _code: None)

    def letter(
        self,
        key: bytes | str,
        raw: bytes | None,
        code: str,
        message: str,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> OutboxRecord:
        """The dead letter :meth:`send` enqueues (counted), for a caller that enqueues a batch at once."""
        self._on_letter(code)
        return OutboxRecord(self._topic, key, raw, dlq_headers(code, message, headers))

    async def send(
        self,
        db: Executor,
        key: bytes | str,
        raw: bytes | None,
        code: str,
        message: str,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Enqueue the original bytes with the reason, in ``db``'s transaction."""
        await enqueue(db, self._schema, self._topic, key, raw, dlq_headers(code, message, headers))
        self._on_letter(code)

    async def send_bounded(
        self,
        db: Executor,
        key: bytes | None,
        raw: bytes | None,
        code: str,
        message: str,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Like :meth:`send`, for a record that may be too large to copy with our headers."""
        letter_headers = dlq_headers(code, message, headers)
        size = len(key or b"") + len(raw or b"") + sum(len(n) + len(v) for n, v in letter_headers)
        if size > DEFAULT_MAX_RECORD_BYTES:
            # A record near the broker's limit (value or key) cannot be copied with our headers; refusing
            # to would stall the consumer on it forever. The letter points at the original instead.
            original = len(key or b"") + len(raw or b"")
            note = f"; the original ({original} bytes) is too large to copy: read it at source_topic/offset"
            size_header = ("original_size", str(len(raw or b"")).encode())
            letter_headers = dlq_headers(code, message + note, [*headers, size_header])
            raw = None
            if len(key or b"") > DEFAULT_MAX_RECORD_BYTES // 2:
                key = b""
        await enqueue(db, self._schema, self._topic, key or b"", raw, letter_headers)
        self._on_letter(code)
