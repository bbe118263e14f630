"""`make up` / `make down`'s program (python -m tiktok_pipeline.up) against the real stack, with its
own ports, directory, database and topic prefix: it starts the three processes in the background,
prints how to use them, is idempotent, both printed ways to post publish a video, and stop stops."""

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid

import asyncpg
import pytest

from common.settings import EnvReader
from tiktok_pipeline.image_run import alive
from tiktok_pipeline.local import ROOT, free_port
from tiktok_pipeline.up import Up

pytestmark = [pytest.mark.slow]


def up(command, env):
    result = subprocess.run(
        [sys.executable, "-m", "tiktok_pipeline.up", command],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def shell(line, env):
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


async def make_video(path):
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=720x1280:rate=30:duration=2",
        "-pix_fmt", "yuv420p", str(path),
    )  # fmt: skip
    assert await process.wait() == 0


async def test_up_runs_the_system_until_down(stack, tmp_path):
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ, **stack.env(), "S3_BUCKET": "media", "UP_DIR": str(tmp_path / "up"),
        "UP_SANDBOX_PORT": str(free_port()), "UP_AUTH_PORT": str(free_port()),
        "UP_PUBLISH_PORT": str(free_port()),
        "UP_DATABASE": f"up_{run}", "UP_TOPIC_PREFIX": f"up{run}.",
    }  # fmt: skip
    try:
        code, out, err = await asyncio.to_thread(up, "start", env)
        assert code == 0, out + err
        auth_url = f"http://127.0.0.1:{env['UP_AUTH_PORT']}"
        for text in (
            f"http://127.0.0.1:{env['UP_SANDBOX_PORT']}",
            auth_url,
            f"{auth_url}/v1/connect",
            "API key",
        ):
            assert text in out, out
        pids = json.loads((tmp_path / "up" / "pids.json").read_text())
        assert set(pids) == {"sandbox", "auth_service", "publish_service"}
        assert all(alive(p["pid"]) for p in pids.values())
        assert not any(
            line.startswith("{") for line in out.splitlines()
        )  # no log lines among the instructions

        # idempotent: a second start finds everything running and starts nothing
        code, again, err = await asyncio.to_thread(up, "start", env)
        assert code == 0 and again.startswith("already running"), again + err
        assert json.loads((tmp_path / "up" / "pids.json").read_text()) == pids
        api_key = re.search(r"API key\s+(\S+)", out).group(1)
        assert api_key in again  # the same secrets: kept in UP_DIR, not generated anew

        pipeline = Up(EnvReader(env), tmp_path / "up").pipeline()
        account = await pipeline.connect_creator()
        video = tmp_path / "clip.mp4"
        await make_video(video)

        # way 1, as printed: source the env file, tiktok-pipeline submit ... --follow
        submit = next(line.strip() for line in out.splitlines() if "tiktok-pipeline submit FILE" in line)
        submit = submit.replace("FILE", str(video)).replace("ACCOUNT_ID", account)
        code, stdout, stderr = await asyncio.to_thread(shell, submit + " --json", env)
        assert code == 0, stdout + stderr
        assert json.loads(stdout)["state"] == "published"

        # way 2, as printed: the kcat one-liner, for a video already in S3
        key = f"up/{run}/clip.mp4"
        async with pipeline.object_store() as store:
            await store.upload_file(video, "media", key)
        kcat = next(line.strip() for line in out.splitlines() if "| kcat " in line)
        post_id = f"kcat-{run}"
        kcat = kcat.replace("ACCOUNT_ID", account).replace("my-post-1", post_id)
        kcat = kcat.replace("s3://media/path/to/video.mp4", f"s3://media/{key}")
        code, stdout, stderr = await asyncio.to_thread(shell, kcat, env)
        assert code == 0, stdout + stderr
        follow = f"source {tmp_path / 'up' / 'env'} && .venv/bin/tiktok-pipeline follow {post_id} --json"
        code, stdout, stderr = await asyncio.to_thread(shell, follow, env)
        assert code == 0, stdout + stderr
        assert json.loads(stdout)["state"] == "published"

        code, out, err = await asyncio.to_thread(up, "stop", env)
        assert code == 0 and out.strip() == "stopped: auth_service, publish_service, sandbox", out + err
        assert not any(alive(p["pid"]) for p in pids.values())
        code, out, _ = await asyncio.to_thread(up, "stop", env)
        assert code == 0 and out.strip() == "nothing was running"
    finally:
        await asyncio.to_thread(up, "stop", env)
        conn = await asyncpg.connect(stack.database_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "up_{run}" WITH (FORCE)')
        finally:
            await conn.close()
