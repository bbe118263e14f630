"""The media PUT to an ``upload_url`` (spec §5.2), and the call observer every call reports to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from common.tiktok.errors import TikTokError, TikTokTransportError
from common.tiktok.guard import check_redirect, read_limited
from common.tiktok.models import PutResult

CallObserver = Callable[[str, str, float], None]
"""Told of every call: the endpoint's path, the result (``ok``, TikTok's error code, ``http_<status>``
when the answer had no code, ``unreachable`` or an HTTP status for upload PUTs) and the seconds it took."""

UPLOAD_ENDPOINT = "upload"


@dataclass
class _Outcome:
    result: str = "ok"


class Observed:
    """``async with observed(endpoint) as outcome:`` reports the call's result and duration."""

    def __init__(self, observer: CallObserver | None) -> None:
        self._observer = observer

    @asynccontextmanager
    async def __call__(self, endpoint: str) -> AsyncIterator[_Outcome]:
        outcome = _Outcome()
        started = time.perf_counter()
        try:
            yield outcome
        except TikTokError as exc:
            outcome.result = exc.label
            raise
        except TikTokTransportError:
            outcome.result = "unreachable"
            raise
        except BaseException:
            outcome.result = "cancelled"
            raise
        finally:
            if self._observer is not None:
                self._observer(endpoint, outcome.result, time.perf_counter() - started)


async def put_chunk(
    session: aiohttp.ClientSession,
    observed: Observed,
    upload_url: str,
    body: AsyncIterable[bytes],
    *,
    first: int,
    last: int,
    total: int,
    content_type: str,
    time_limit: aiohttp.ClientTimeout,
    write_stall_s: float,
) -> PutResult:
    """PUT one chunk streamed from ``body``; the status whatever it is (the caller decides)."""
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(last - first + 1),
        "Content-Range": f"bytes {first}-{last}/{total}",
    }
    loop = asyncio.get_running_loop()
    try:
        async with (
            observed(UPLOAD_ENDPOINT) as outcome,
            asyncio.timeout(loop.time() + write_stall_s) as watchdog,
        ):

            async def watched() -> AsyncIterator[bytes]:
                # aiohttp's sock_read covers only the answer; nothing bounds the writes, so a
                # peer that accepts the connection and stops reading would hold this PUT (and
                # its worker) forever. Each piece taken means the one before was written.
                async for piece in body:
                    watchdog.reschedule(loop.time() + write_stall_s)
                    yield piece
                watchdog.reschedule(None)  # all written: sock_read bounds the wait for the answer

            async with session.put(
                upload_url, data=watched(), headers=headers, timeout=time_limit, allow_redirects=False
            ) as response:
                check_redirect(response.status, response.headers, endpoint=UPLOAD_ENDPOINT)
                await read_limited(response, endpoint=UPLOAD_ENDPOINT)
                outcome.result = str(response.status)
                return PutResult(response.status, response.headers.get("Content-Range"))
    except aiohttp.ClientConnectorError as exc:
        raise TikTokTransportError(
            f"cannot connect: {exc.os_error}", maybe_applied=False, endpoint=UPLOAD_ENDPOINT
        ) from exc
    except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise TikTokTransportError(
            f"upload interrupted: {type(exc).__name__}", maybe_applied=True, endpoint=UPLOAD_ENDPOINT
        ) from exc
