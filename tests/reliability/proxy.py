"""A user-space TCP proxy on loopback that misbehaves on request, for network-fault tests.

Put it between a client and a server (``upstream``); switch its behaviour at any moment::

    async with FaultyProxy("127.0.0.1", sandbox_port) as proxy:   # proxy.url -> http://127.0.0.1:<port>
        proxy.latency(0.1)                     # every forwarded piece waits 100 ms (both ways)
        proxy.cut(after=(64_000, 4_000_000), probability=0.3, rng=random.Random(7))
                                               # a new connection is cut (RST) once that many bytes passed
        proxy.stall()                          # new connections are accepted and never answered; open ones
                                               # stop forwarding (what clients send is read and dropped)
        proxy.pass_through()                   # back to normal for new connections

A stalled connection stays stalled after ``pass_through()``: only the client giving up ends it, which
is what a test of client timeouts must see (``stalled_closed_by_client`` counts the stalled
connections that carried a request and were then closed by the client, ``stall_durations_s`` how
long each client waited after its last byte). A stalled connection reads and drops what
the client sends, as a hung server whose kernel still accepts bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    connections: int = 0
    cuts: int = 0
    stalled: int = 0
    stalled_closed_by_client: int = 0
    stall_durations_s: list[float] = field(default_factory=list)
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass
class _Conn:
    cut_at: int | None
    passed: int = 0
    stalled_since: float | None = None


class FaultyProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.stats = ProxyStats()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._delay = 0.0
        self._cut: tuple[tuple[int, int], float, random.Random] | None = None
        self._stalling = False
        self._stall_begun = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ modes

    def pass_through(self) -> None:
        self._delay = 0.0
        self._cut = None
        self._stalling = False
        self._stall_begun.clear()  # the same event: open connections still wait on it

    def latency(self, seconds: float) -> None:
        self._delay = seconds

    def cut(self, *, after: tuple[int, int], probability: float, rng: random.Random) -> None:
        """Each new connection, with ``probability``, is reset after a number of bytes (both ways
        counted) drawn from ``after``; connections with less traffic than that live on."""
        self._cut = (after, probability, rng)

    def stall(self) -> None:
        self._stalling = True
        self._stall_begun.set()

    @property
    def stalling(self) -> bool:
        return self._stalling

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultyProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ forwarding

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._accept(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._writers.add(writer)
        cut_at = None
        if self._cut is not None:
            (low, high), probability, rng = self._cut
            if rng.random() < probability:
                cut_at = rng.randint(low, high)
        conn = _Conn(cut_at)
        try:
            if self._stalling or await self._forward(conn, reader, writer):
                await self._hold(conn, reader)
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _forward(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Forward both ways until either side closes (False), or until a stall begins (True)."""
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return False
        self._writers.add(up_writer)
        pipes = [
            asyncio.ensure_future(self._pipe(conn, reader, up_writer, writer, upward=True)),
            asyncio.ensure_future(self._pipe(conn, up_reader, writer, up_writer, upward=False)),
        ]
        stalled = asyncio.ensure_future(self._stall_begun.wait())
        both = asyncio.gather(*pipes)
        try:
            await asyncio.wait([both, stalled], return_when=asyncio.FIRST_COMPLETED)
            return not both.done()
        finally:
            for task in [*pipes, stalled]:
                task.cancel()
            await asyncio.gather(both, stalled, return_exceptions=True)
            self._writers.discard(up_writer)
            up_writer.transport.abort()

    async def _hold(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        """A hung server: read and drop whatever comes, answer nothing, until the client gives up.

        How long the client waited counts from the last byte it sent (its request, or the rest of
        a chunk caught mid-stream) to its close; idle keep-alive connections that send nothing
        are not client timeouts and are left out."""
        self.stats.stalled += 1
        conn.stalled_since = time.monotonic()
        last_sent: float | None = None
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                last_sent = time.monotonic()
        if last_sent is not None:
            self.stats.stalled_closed_by_client += 1
            self.stats.stall_durations_s.append(time.monotonic() - last_sent)

    async def _pipe(
        self,
        conn: _Conn,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
        *,
        upward: bool,
    ) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        if dst.can_write_eof():
                            dst.write_eof()
                    return
                if self._delay:
                    await asyncio.sleep(self._delay)
                if conn.cut_at is not None and conn.passed + len(data) >= conn.cut_at:
                    dst.write(data[: max(0, conn.cut_at - conn.passed)])
                    self.stats.cuts += 1
                    conn.cut_at = None
                    dst.transport.abort()
                    other.transport.abort()
                    return
                conn.passed += len(data)
                if upward:
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            dst.transport.abort()
            other.transport.abort()
