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
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlparse

import aiohttp
import asyncpg
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from common.cipher import generate_key
from common.events import Envelope, EventType, PostRequestedData, PostStatusData, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer, ensure_topics, standard_topics
from common.logging import configure_logging
from common.s3 import ObjectStore
from common.settings import EnvReader
from tiktok_pipeline.follow import follow_post, is_done

console = Console()
ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sbxdemo"
CREATOR = "demo_creator"


class DemoFailed(Exception):
    def __init__(self, step: str, message: str, log: Path | None) -> None:
        super().__init__(message)
        self.step, self.message, self.log = step, message, log


@dataclass
class Service:
    name: str
    log: Path
    process: asyncio.subprocess.Process | None = None


@dataclass
class Demo:
    env: EnvReader
    work: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    services: list[Service] = field(default_factory=list)
    current_step: str = "start"
    current_log: Path | None = None
    ports: dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ bookkeeping

    @contextlib.contextmanager
    def step(self, name: str, log: Path | None = None) -> Iterator[None]:
        self.current_step, self.current_log = name, log
        started = time.monotonic()
        console.print(f"[bold cyan]▶ {name}[/bold cyan]")
        yield
        console.print(f"  [green]done[/green] in {time.monotonic() - started:.1f}s")

    def fail(self, message: str) -> DemoFailed:
        return DemoFailed(self.current_step, message, self.current_log)

    # ------------------------------------------------------------------ processes

    async def start_process(self, name: str, args: list[str], extra_env: dict[str, str]) -> Service:
        log = self.work / f"{name}.log"
        service = Service(name, log)
        handle = log.open("wb")
        env = {**os.environ, **extra_env}
        service.process = await asyncio.create_subprocess_exec(
            sys.executable, *args, stdout=handle, stderr=asyncio.subprocess.STDOUT, env=env, cwd=ROOT
        )
        handle.close()
        self.services.append(service)
        return service

    async def wait_ready(self, service: Service, url: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while time.monotonic() < deadline:
                if service.process is not None and service.process.returncode is not None:
                    raise self.fail(f"{service.name} exited with code {service.process.returncode}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise self.fail(f"{service.name} was not ready at {url} within {within:.0f}s")

    async def stop_all(self) -> None:
        for service in reversed(self.services):
            process = service.process
            if process is None or process.returncode is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.asynccontextmanager
async def scratch_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A database of the demo's own, dropped afterwards, so runs never see each other's posts."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    parsed = urlparse(admin_url)
    try:
        yield parsed._replace(path=f"/{name}").geturl()
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def connect_creator(auth_url: str, success_url: str) -> str:
    """Walk the real redirect chain as a browser would, clicking Authorize on the consent page."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies on 127.0.0.1, as a browser keeps them
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as session:
        url = f"{auth_url}/v1/connect"
        method, form = "GET", None
        for _hop in range(10):
            async with session.request(method, url, data=form, allow_redirects=False) as response:
                body = await response.text()
                if response.status in (301, 302, 303, 307):
                    url = urljoin(url, response.headers["Location"])
                    method, form = "GET", None
                    if url.startswith(success_url):
                        account = parse_qs(urlparse(url).query).get("account_id", [""])[0]
                        if not account:
                            raise RuntimeError(f"the success redirect carries no account_id: {url}")
                        return account
                    continue
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status} at {url}: {body[:300]}")
                match = re.search(r'name="request_id" value="([^"]+)"', body)
                if match is None:
                    raise RuntimeError(f"expected the consent page at {url}, got: {body[:300]}")
                console.print("  consent page shown; clicking [bold]Authorize[/bold]")
                scopes = re.findall(r'name="scope" value="([^"]+)" checked', body)
                form = aiohttp.FormData(
                    [("request_id", match.group(1)), ("creator", CREATOR), ("decision", "authorize")]
                    + [("scope", s) for s in scopes]
                )
                method, url = "POST", urljoin(url, "/v2/auth/authorize/")
        raise RuntimeError("too many redirects")


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


async def run(demo: Demo) -> dict[str, Any]:
    env = demo.env
    kafka = env.string("KAFKA_BOOTSTRAP_SERVERS")
    admin_db = env.string("DATABASE_URL")
    s3 = {
        "endpoint_url": env.string("S3_ENDPOINT_URL"),
        "access_key_id": env.string("S3_ACCESS_KEY_ID"),
        "secret_access_key": env.string("S3_SECRET_ACCESS_KEY"),
        "region": env.string("S3_REGION", "us-east-1"),
    }
    bucket = env.string("S3_BUCKET", "media")
    prefix = f"demo{demo.run_id}."
    sandbox_port, auth_port, publish_port = free_port(), free_port(), free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    auth_url, publish_url = f"http://127.0.0.1:{auth_port}", f"http://127.0.0.1:{publish_port}"
    success_url = f"{auth_url}/v1/connected"
    client_secret = secrets.token_urlsafe(24)
    api_key = secrets.token_urlsafe(24)
    transport_keys = f"t1:{generate_key()}"

    async with scratch_database(admin_db, f"demo_{demo.run_id}") as database_url:
        with demo.step("start the TikTok sandbox", demo.work / "sandbox.log"):
            seed = {
                "data_dir": str(demo.work / "sandbox-data"),
                "processing_min_s": 2.0,
                "moderation_delay_s": 3.0,
                "apps": [
                    {
                        "client_key": CLIENT_KEY,
                        "client_secret": client_secret,
                        "name": "tiktok-pipeline demo",
                        "app_type": "desktop",
                        "redirect_uris": [f"{auth_url}/v1/oauth/callback"],
                        "webhook_url": f"{publish_url}/v1/webhooks/tiktok",
                    }
                ],
                "creators": [{"username": CREATOR, "nickname": "Demo Creator"}],
            }
            config = demo.work / "sandbox.json"
            config.write_text(json.dumps(seed))
            sandbox = await demo.start_process(
                "sandbox",
                ["-m", "tiktok_sandbox", "--host", "127.0.0.1", "--port", str(sandbox_port), "--config",
                 str(config)],
                {"LOG_FORMAT": "json"},
            )  # fmt: skip
            await demo.wait_ready(sandbox, f"{sandbox_url}/_sandbox/health")

        with demo.step("create the topics"):
            await ensure_topics(kafka, standard_topics(prefix, partitions=3).values())

        common_env = {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": kafka,
            "TOPIC_PREFIX": prefix,
            "TIKTOK_API_BASE": sandbox_url,
            "TIKTOK_AUTHORIZE_URL": f"{sandbox_url}/v2/auth/authorize/",
            "TIKTOK_CLIENT_KEY": CLIENT_KEY,
            "TIKTOK_CLIENT_SECRET": client_secret,
            "TRANSPORT_KEYS": transport_keys,
            "API_KEY": api_key,
            "LOG_FORMAT": "json",
            "S3_ENDPOINT_URL": s3["endpoint_url"],
            "S3_ACCESS_KEY_ID": s3["access_key_id"],
            "S3_SECRET_ACCESS_KEY": s3["secret_access_key"],
            "S3_REGION": s3["region"],
            "S3_ALLOWED_BUCKETS": bucket,
        }
        with demo.step("start auth_service", demo.work / "auth_service.log"):
            auth = await demo.start_process(
                "auth_service",
                ["-m", "auth_service"],
                {
                    **common_env,
                    "HTTP_PORT": str(auth_port),
                    "TIKTOK_APP_TYPE": "desktop",
                    "OAUTH_REDIRECT_URI": f"{auth_url}/v1/oauth/callback",
                    "CONNECT_SUCCESS_URL": success_url,
                    "TOKEN_KEYS": f"k1:{generate_key()}",
                },
            )
            await demo.wait_ready(auth, f"{auth_url}/readyz")

        with demo.step("start publish_service", demo.work / "publish_service.log"):
            publish = await demo.start_process(
                "publish_service", ["-m", "publish_service"], {**common_env, "HTTP_PORT": str(publish_port)}
            )
            await demo.wait_ready(publish, f"{publish_url}/readyz")

        with demo.step("connect a sandbox creator through OAuth", demo.work / "auth_service.log"):
            account_id = await connect_creator(auth_url, success_url)
            console.print(f"  connected account [bold]{account_id}[/bold] ({CREATOR})")

        video = demo.work / "sample.mp4"
        with demo.step("make a vertical sample video with ffmpeg"):
            await make_video(video, seconds=16)  # ~75 MB: over 64 MiB, so it goes in 10 MiB chunks
            size = video.stat().st_size
            digest = await asyncio.to_thread(_sha256, video)
            console.print(f"  {size:,} bytes, sha256 {digest[:16]}…")

        key = f"demo/{demo.run_id}/sample.mp4"
        with demo.step(f"put it in object storage (s3://{bucket}/{key})"):
            async with ObjectStore(
                endpoint_url=s3["endpoint_url"],
                access_key_id=s3["access_key_id"],
                secret_access_key=s3["secret_access_key"],
                region=s3["region"],
            ) as store:
                await store.upload_file(video, bucket, key, content_type="video/mp4")

        post_id = f"demo-{demo.run_id}"
        request = PostRequestedData(
            post_id=post_id,
            account_id=account_id,
            kind="video",
            mode="direct",
            video={"uri": f"s3://{bucket}/{key}"},
            caption="Hello from tiktok-pipeline #demo 🎬",
            privacy_level="PUBLIC_TO_EVERYONE",
            metadata={"source": "make demo"},
        )
        with demo.step("write the tiktok.post.requested event"):
            value, headers = encode(EventType.post_requested, request, correlation_id=f"demo-{demo.run_id}")
            async with Producer(kafka, client_id="demo") as producer:
                await producer.send(prefix + TOPIC_POST_REQUESTED, account_id, value, headers)
        started = time.monotonic()

        with demo.step(
            "follow tiktok.post.status until the post is public", demo.work / "publish_service.log"
        ):
            progress = Progress(
                TextColumn("  {task.description:<28}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                console=console,
            )  # fmt: skip
            task = progress.add_task("received", total=size)

            def show(envelope: Envelope[PostStatusData]) -> None:
                data = envelope.data
                if data.progress is not None:
                    progress.update(task, completed=data.progress.bytes_sent, total=data.progress.bytes_total)
                progress.update(task, description=str(data.state))

            with progress:
                timeline = await follow_post(
                    kafka, prefix + TOPIC_POST_STATUS, post_id, within=300, on_event=show, until=is_done
                )
            last = timeline.last
            if last is None or last.state != "published":
                error = last.error if last is not None else None
                raise demo.fail(f"the post ended {last.state if last else 'nowhere'}: {error}")

        with demo.step("check the bytes that arrived at the sandbox"):
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.get(f"{sandbox_url}/_sandbox/posts") as response,
            ):
                posts = [p for p in await response.json() if p["publish_id"] == last.publish_id]
            if len(posts) != 1 or posts[0]["sha256"] != digest or posts[0]["size"] != size:
                raise demo.fail(f"the sandbox holds {posts!r}, expected one post of {size} bytes, {digest}")
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
    demo = Demo(EnvReader(), work)
    try:
        result = await run(demo)
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed at step '{exc.step}':[/bold red] {exc.message}")
        if exc.log is not None:
            console.print(f"read the log: {exc.log}")
        return 1
    except Exception as exc:  # noqa: BLE001 - any failure is reported with its step and log
        console.print(
            f"[bold red]demo failed at step '{demo.current_step}':[/bold red] {type(exc).__name__}: {exc}"
        )
        if demo.current_log is not None:
            console.print(f"read the log: {demo.current_log}")
        return 1
    finally:
        await demo.stop_all()
    print_summary(result, work)
    return 0


def main() -> int:
    configure_logging("WARNING", "console")  # the demo speaks through its own output
    return asyncio.run(amain())


if __name__ == "__main__":
    sys.exit(main())
