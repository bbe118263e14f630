"""One real pipeline (sandbox + both services as processes) per module, for the operator's view."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest_asyncio

from common.settings import EnvReader
from tiktok_pipeline.local import LocalPipeline


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pipeline(stack, tmp_path_factory):
    local = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}), tmp_path_factory.mktemp("pipeline")
    )
    try:
        await local.start()
        yield local
    finally:
        await local.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def account(pipeline):
    return await pipeline.connect_creator()


# The installed console script, as an operator runs it (pyproject's [project.scripts]).
ENTRY_POINT = str(Path(sys.executable).with_name("tiktok-pipeline"))


def run_cli(*args, env=None, timeout=240):
    """``tiktok-pipeline ARGS`` through its real entry point: (exit code, stdout, stderr)."""
    result = subprocess.run(
        [ENTRY_POINT, *args], env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def cli(pipeline, *args, extra_env=None, timeout=240):
    """Run ``tiktok-pipeline`` as an operator would, with the services' environment."""
    code, out, err = run_cli(*args, env={**pipeline.service_env(), **(extra_env or {})}, timeout=timeout)
    return code, out + err


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def published_post(pipeline, account, tmp_path_factory):
    video = tmp_path_factory.mktemp("media") / "clip.mp4"
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=720x1280:rate=30:duration=2",
        "-pix_fmt", "yuv420p", str(video),
    )  # fmt: skip
    assert await process.wait() == 0
    post_id = f"cli-{uuid.uuid4().hex[:8]}"
    code, output = await asyncio.to_thread(
        cli, pipeline, "submit", str(video), "--account", account, "--post-id", post_id,
        "--caption", "from the CLI #test", "--privacy", "SELF_ONLY", "--follow", "--timeout", "180",
    )  # fmt: skip
    return post_id, video, code, output


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rejected_post(pipeline, account):
    """A record that is not JSON (dead-lettered) and a post whose video does not exist (it ends
    rejected or failed); returns the post's last status."""
    from common.events import EventType, PostRequestedData, encode
    from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
    from tiktok_pipeline.follow import follow_post

    post_id = f"missing-{uuid.uuid4().hex[:8]}"
    request = PostRequestedData(
        post_id=post_id, account_id=account, kind="video", mode="direct",
        video={"uri": f"s3://{pipeline.bucket}/nothing/here-{post_id}.mp4"}, privacy_level="SELF_ONLY",
    )  # fmt: skip
    value, headers = encode(EventType.post_requested, request, correlation_id=post_id)
    async with Producer(pipeline.kafka, client_id="observability-test") as producer:
        await producer.send(pipeline.prefix + TOPIC_POST_REQUESTED, account, b"{not json", [])
        await producer.send(pipeline.prefix + TOPIC_POST_REQUESTED, account, value, headers)
    timeline = await follow_post(pipeline.kafka, pipeline.prefix + TOPIC_POST_STATUS, post_id, within=120)
    assert timeline.last is not None and timeline.last.state in {"rejected", "failed"}, timeline.last
    return timeline.last
