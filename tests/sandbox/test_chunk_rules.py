"""§5.1 / §9.2 chunk rules, property-tested: a reference predicate written from the spec vs the server.

The server runs in its own thread and event loop so hypothesis can drive it with plain blocking HTTP.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiktok_sandbox import rules
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import run_sandbox

MIB = 1024 * 1024
GIB = 1024 * MIB
EDGES = [
    1,
    5 * MIB - 1,
    5 * MIB,
    5 * MIB + 1,
    64 * MIB - 1,
    64 * MIB,
    64 * MIB + 1,
    128 * MIB,
    4 * GIB,
    4 * GIB + 1,
]


def reference_accepts(size: int, chunk: int, total: int) -> bool:
    """The rules as §9.2 step 4 lists them, one line each."""
    if min(size, chunk, total) <= 0 or size > 4 * GIB:
        return False
    if size < 5 * MIB:  # under 5 MiB: whole upload only
        return chunk == size and total == 1
    whole = chunk == size <= 64 * MIB
    return (
        (5 * MIB <= chunk <= 64 * MIB or whole)
        and total == size // chunk  # floor rule
        and not (size > 64 * MIB and total < 2)  # over 64 MiB must be chunked
        and 1 <= total <= 1000
        and size - (total - 1) * chunk <= 128 * MIB  # final chunk
    )


def plans():
    sizes = st.one_of(st.sampled_from(EDGES), st.integers(1, 5 * GIB))

    @st.composite
    def plan(draw):
        size = draw(sizes)
        chunk = draw(st.one_of(st.just(size), st.sampled_from(EDGES), st.integers(1, 200 * MIB)))
        floor = size // chunk
        total = draw(
            st.one_of(st.just(floor), st.sampled_from([floor - 1, floor + 1, 1, 2])), st.integers(0, 1100)
        )
        return size, chunk, total

    return plan()


@given(plans())
@settings(max_examples=2000, deadline=None)
def test_chunk_rule_function_matches_reference_predicate(plan):
    assert (rules.chunk_plan_error(*plan) is None) == reference_accepts(*plan)


class ThreadedSandbox:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with run_sandbox(SandboxConfig(rate_limits={})) as sb:
            app = await sb.control.create_app()
            await sb.control.create_creator("prop", daily_post_cap=10**9)
            token = await sb.control.issue_token(app.client_key, "prop")
            self.base_url, self.token = sb.base_url, token.access_token
            self.ready.set()
            await self.stop.wait()

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:
            self.error = e
            self.ready.set()

    def init(self, size: int, chunk: int, total: int) -> int:
        body = {
            "post_info": {"privacy_level": "SELF_ONLY"},
            "source_info": {
                "source": "FILE_UPLOAD",
                "video_size": size,
                "chunk_size": chunk,
                "total_chunk_count": total,
            },
        }
        request = urllib.request.Request(  # noqa: S310 (our own loopback http URL)
            self.base_url + "/v2/post/publish/video/init/",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json; charset=UTF-8",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
                return resp.status
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read())
            e.close()
            assert payload["error"]["code"] == "invalid_params", payload
            return e.code


@pytest.fixture(scope="module")
def threaded_sandbox():
    server = ThreadedSandbox()
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert server.ready.wait(10), "sandbox thread did not start"
    if server.error:
        raise server.error
    yield server
    server.loop.call_soon_threadsafe(server.stop.set)
    thread.join(10)


@given(plans())
@settings(max_examples=300, deadline=None)
def test_init_chunk_rules_match_reference_predicate(threaded_sandbox, plan):
    status = threaded_sandbox.init(*plan)
    assert status == (200 if reference_accepts(*plan) else 400), plan
