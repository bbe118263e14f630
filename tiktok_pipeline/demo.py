"""``make demo``: the whole pipeline, end to end, on the local stack and the TikTok sandbox.

It starts the sandbox and both services, connects a sandbox creator through the real OAuth redirect
chain (connect → consent page → Authorize → callback), makes a vertical sample video with ffmpeg,
puts it in object storage, writes one ``tiktok.post.requested`` event, follows
``tiktok.post.status`` with a progress bar until the post is public, prints a summary and stops what
it started. A failure names the step and the log to read.

Needs the stack's variables (``.stack/env``): ``make demo`` provides them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from common.events import Envelope, EventType, PostRequestedData, PostStatusData, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
from common.logging import configure_logging
from common.settings import EnvReader
from tiktok_pipeline.follow import bytes_progress, follow_post, is_done
from tiktok_pipeline.local import CREATOR, ROOT, LocalPipeline, StartFailed

console = Console()


class DemoFailed(Exception):
    def __init__(self, step: str, message: str, log: Path | None) -> None:
        super().__init__(message)
        self.step, self.message, self.log = step, message, log


class Steps:
    """Prints each step, and remembers which one is running and which log explains it."""

    def __init__(self) -> None:
        self.current = "start"
        self.log: Path | None = None

    @contextlib.contextmanager
    def __call__(self, name: str, log: Path | None = None) -> Iterator[None]:
        self.current, self.log = name, log
        started = time.monotonic()
        console.print(f"[bold cyan]▶ {name}[/bold cyan]")
        yield
        console.print(f"  [green]done[/green] in {time.monotonic() - started:.1f}s")

    def fail(self, message: str) -> DemoFailed:
        return DemoFailed(self.current, message, self.log)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def make_video(path: Path, seconds: int) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg is not installed (make install adds it)")
    process = await asyncio.create_subprocess_exec(
        ffmpeg, "-y", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size=1080x1920:rate=30:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "60M", "-maxrate", "60M", "-bufsize", "60M",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"ffmpeg failed: {err.decode(errors='replace')[-500:]}")


async def run(pipeline: LocalPipeline, step: Steps) -> dict[str, Any]:
    work = pipeline.work
    with step("create a database and topics of the demo's own"):
        await pipeline.create_database()
        await pipeline.create_topics()
    with step("start the TikTok sandbox", work / "sandbox.log"):
        await pipeline.start_sandbox()
    with step("start auth_service", work / "auth_service.log"):
        await pipeline.start_auth()
    with step("start publish_service", work / "publish_service.log"):
        await pipeline.start_publish()

    with step("connect a sandbox creator through OAuth", work / "auth_service.log"):
        account_id = await pipeline.connect_creator(
            on_consent=lambda: console.print("  consent page shown; clicking [bold]Authorize[/bold]")
        )
        console.print(f"  connected account [bold]{account_id}[/bold] ({CREATOR})")

    video = work / "sample.mp4"
    with step("make a vertical sample video with ffmpeg"):
        await make_video(video, seconds=16)  # ~75 MB: over 64 MiB, so it goes in 10 MiB chunks
        size = video.stat().st_size
        digest = await asyncio.to_thread(_sha256, video)
        console.print(f"  {size:,} bytes, sha256 {digest[:16]}…")

    key = f"demo/{pipeline.run_id}/sample.mp4"
    with step(f"put it in object storage (s3://{pipeline.bucket}/{key})"):
        async with pipeline.object_store() as store:
            await store.upload_file(video, pipeline.bucket, key, content_type="video/mp4")

    post_id = f"demo-{pipeline.run_id}"
    request = PostRequestedData(
        post_id=post_id,
        account_id=account_id,
        kind="video",
        mode="direct",
        video={"uri": f"s3://{pipeline.bucket}/{key}"},
        caption="Hello from tiktok-pipeline #demo 🎬",
        privacy_level="PUBLIC_TO_EVERYONE",
        metadata={"source": "make demo"},
    )
    with step("write the tiktok.post.requested event"):
        value, headers = encode(EventType.post_requested, request, correlation_id=f"demo-{pipeline.run_id}")
        async with Producer(pipeline.kafka, client_id="demo") as producer:
            await producer.send(pipeline.prefix + TOPIC_POST_REQUESTED, account_id, value, headers)
    started = time.monotonic()

    with step("follow tiktok.post.status until the post is public", work / "publish_service.log"):
        progress = bytes_progress(console, "  {task.description:<28}")
        task = progress.add_task("received", total=size)

        def show(envelope: Envelope[PostStatusData]) -> None:
            data = envelope.data
            if data.progress is not None:
                progress.update(task, completed=data.progress.bytes_sent, total=data.progress.bytes_total)
            progress.update(task, description=str(data.state))

        with progress:
            timeline = await follow_post(
                pipeline.kafka, pipeline.prefix + TOPIC_POST_STATUS, post_id, within=300, on_event=show,
                until=is_done,
            )  # fmt: skip
        last = timeline.last
        if last is None or last.state != "published":
            error = last.error if last is not None else None
            raise step.fail(f"the post ended {last.state if last else 'nowhere'}: {error}")

    with step("check the bytes that arrived at the sandbox"):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{pipeline.sandbox_url}/_sandbox/posts") as response,
        ):
            posts = [p for p in await response.json() if p["publish_id"] == last.publish_id]
        if len(posts) != 1 or posts[0]["sha256"] != digest or posts[0]["size"] != size:
            raise step.fail(f"the sandbox holds {posts!r}, expected one post of {size} bytes, {digest}")
    return {
        "post_id": post_id,
        "account_id": account_id,
        "publish_id": last.publish_id,
        "tiktok_post_ids": last.tiktok_post_ids,
        "bytes": size,
        "sha256": digest,
        "seconds": time.monotonic() - started,
        "timeline": timeline,
    }


def print_summary(result: dict[str, Any], work: Path) -> None:
    table = Table(title="tiktok-pipeline demo: published", show_header=False)
    table.add_row("post_id", result["post_id"])
    table.add_row("account", result["account_id"])
    table.add_row("publish_id", result["publish_id"])
    table.add_row("TikTok post ids", ", ".join(result["tiktok_post_ids"]))
    table.add_row("bytes", f"{result['bytes']:,} (sha256 {result['sha256'][:16]}…, byte-exact at TikTok)")
    table.add_row("time", f"{result['seconds']:.1f}s from event to public post")
    table.add_row("logs", str(work))
    console.print(table)
    states = Table("seq", "state", "at", "detail", title="status events")
    timeline = result["timeline"]
    start = timeline.events[0][0]
    for at, data in timeline.events:
        parts = []
        if data.progress:
            parts.append(f"{data.progress.bytes_sent:,}/{data.progress.bytes_total:,} bytes")
        if data.publish_id and data.state != "processing":
            parts.append(f"publish_id {data.publish_id}")
        if data.tiktok_post_ids:
            parts.append(f"post ids {', '.join(data.tiktok_post_ids)}")
        detail = "; ".join(parts)
        states.add_row(str(data.seq), str(data.state), f"+{at - start:.2f}s", detail)
    console.print(states)


async def amain() -> int:
    work = ROOT / ".stack" / "demo"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pipeline = LocalPipeline(EnvReader(), work)
    step = Steps()
    try:
        result = await run(pipeline, step)
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed at step '{exc.step}':[/bold red] {exc.message}")
        if exc.log is not None:
            console.print(f"read the log: {exc.log}")
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its step and log
        console.print(
            f"[bold red]demo failed at step '{step.current}':[/bold red] {type(exc).__name__}: {exc}"
        )
        log = exc.log if isinstance(exc, StartFailed) else step.log
        if log is not None:
            console.print(f"read the log: {log}")
        return 1
    finally:
        with step("stop what the demo started"):
            await pipeline.stop()
    print_summary(result, work)
    return 0


def main() -> int:
    configure_logging("WARNING", "console")  # the demo speaks through its own output
    return asyncio.run(amain())


if __name__ == "__main__":
    sys.exit(main())
