"""``make up`` / ``make down``: the sandbox, auth_service and publish_service left running in the
background against the local stack, until stopped.

    python -m tiktok_pipeline.up start     start what is not running (idempotent), print how to use it
    python -m tiktok_pipeline.up stop      stop what ``start`` started (idempotent)

Needs the stack's variables (``.stack/env``; ``make up`` provides them). Everything lives in
``UP_DIR`` (default ``$STACK_DIR/up``, i.e. .stack/up): logs, pids, the sandbox's data, and
``secrets.json`` / ``env`` (mode 0600: the API key, client secret and encryption keys, generated
once and kept, so tokens stored by one run are readable by the next). Ports: ``UP_SANDBOX_PORT``
(18080), ``UP_AUTH_PORT`` (8081), ``UP_PUBLISH_PORT`` (8082); database ``UP_DATABASE`` (pipeline) on
the stack's PostgreSQL; topics prefixed with ``UP_TOPIC_PREFIX`` (none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import asyncpg

from common.events import EventType, PostRequestedData, encode
from common.kafka import TOPIC_POST_REQUESTED
from common.logging import configure_logging
from common.settings import EnvReader
from tiktok_pipeline.image_run import alive
from tiktok_pipeline.local import ROOT, HostLauncher, LocalPipeline, ProcessHandle, StartFailed

SERVICES = ("sandbox", "auth_service", "publish_service")
SECRETS = ("client_secret", "api_key", "transport_keys", "token_keys")


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a pid from a recycled one), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class DetachedProcess:
    """A process that outlives this one: ``subprocess.Popen`` (asyncio would kill it on exit)."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    async def wait(self) -> int:
        return await asyncio.to_thread(self.popen.wait)


class DetachedLauncher(HostLauncher):
    """From the checkout, in a session of its own, so the processes outlive ``make up``."""

    async def launch(self, name: str, args: list[str], env: dict[str, str], log: Path) -> ProcessHandle:
        with log.open("ab") as handle:
            return DetachedProcess(
                # Popen returns at once; the process is meant to outlive us. Our own interpreter.
                subprocess.Popen(  # noqa: ASYNC220, S603
                    [sys.executable, *args], stdout=handle, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, env={**os.environ, **env}, cwd=ROOT, start_new_session=True,
                )
            )  # fmt: skip


class Up:
    def __init__(self, env: EnvReader, directory: Path) -> None:
        self.env, self.dir = env, directory
        self.pids_file = directory / "pids.json"
        self.secrets_file = directory / "secrets.json"
        self.env_file = directory / "env"

    # ---------------------------------------------------------------- state

    def running(self) -> dict[str, int]:
        """The recorded processes that still run (same pid, same start time)."""
        try:
            recorded = json.loads(self.pids_file.read_text())
        except (OSError, ValueError):
            return {}
        return {
            name: entry["pid"]
            for name, entry in recorded.items()
            if start_time(entry["pid"]) == entry["started"] and alive(entry["pid"])
        }

    def pipeline(self) -> LocalPipeline:
        work = self.dir
        pipeline = LocalPipeline(self.env, work, launcher=DetachedLauncher())
        ports = {
            "sandbox_url": self.env.integer("UP_SANDBOX_PORT", 18080),
            "auth_url": self.env.integer("UP_AUTH_PORT", 8081),
            "publish_url": self.env.integer("UP_PUBLISH_PORT", 8082),
        }
        for attribute, port in ports.items():
            setattr(pipeline, attribute, f"http://127.0.0.1:{port}")
        pipeline.success_url = f"{pipeline.auth_url}/v1/connected"
        pipeline.prefix = self.env.optional("UP_TOPIC_PREFIX") or ""
        pipeline.database_name = self.env.string("UP_DATABASE", "pipeline")
        admin = urlparse(pipeline.admin_database_url)
        pipeline.database_url = admin._replace(path=f"/{pipeline.database_name}").geturl()
        # Generated once, then kept: tokens encrypted under token_keys must stay readable.
        try:
            saved = json.loads(self.secrets_file.read_text())
        except (OSError, ValueError):
            saved = {name: getattr(pipeline, name) for name in SECRETS}
            write_private(self.secrets_file, json.dumps(saved))
        for name in SECRETS:
            setattr(pipeline, name, saved[name])
        return pipeline

    # ---------------------------------------------------------------- start / stop

    async def start(self) -> LocalPipeline:
        self.dir.mkdir(parents=True, exist_ok=True)
        pipeline = self.pipeline()
        running = self.running()
        if set(running) == set(SERVICES):
            return pipeline
        if running:  # half up: start again from a clean slate
            await self.stop()
        await ensure_database(pipeline.admin_database_url, pipeline.database_name)
        await pipeline.create_topics()
        try:
            await pipeline.start_sandbox()
            await pipeline.start_auth()
            await pipeline.start_publish()
        finally:
            self.record(pipeline)
        write_private(
            self.env_file, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in cli_env(pipeline).items())
        )
        return pipeline

    def record(self, pipeline: LocalPipeline) -> None:
        pids = {}
        for service in pipeline.services:
            if service.process is not None and service.process.returncode is None:
                pid = service.process.pid
                pids[service.name] = {"pid": pid, "started": start_time(pid)}
        self.pids_file.write_text(json.dumps(pids))

    async def stop(self, within: float = 30.0) -> list[str]:
        running = self.running()
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # each runs in its own session: its group is its pid
        deadline = asyncio.get_running_loop().time() + within
        # Not our children (started by an earlier `make up`): /proc is the only way to see them exit.
        while any(alive(pid) for pid in running.values()):
            if asyncio.get_running_loop().time() > deadline:
                for pid in running.values():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
            await asyncio.sleep(0.1)
        self.pids_file.unlink(missing_ok=True)
        return sorted(running)


async def ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def cli_env(pipeline: LocalPipeline) -> dict[str, str]:
    """What ``tiktok-pipeline`` needs to talk to this system (``source .stack/up/env``)."""
    service_env = pipeline.service_env()
    names = ("KAFKA_BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "AUTH_SERVICE_URL", "API_KEY", "S3_ENDPOINT_URL",
             "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_REGION", "S3_BUCKET")  # fmt: skip
    return {name: service_env[name] for name in names}


def kcat_command(bootstrap: str, topic: str, account: str, uri: str, post_id: str) -> str:
    """A shell one-liner that writes one ``tiktok.post.requested`` event with kcat: the JSON envelope
    (``event_id`` and ``occurred_at`` are filled in by the reader when absent) and its headers."""
    data = PostRequestedData.model_validate(
        {"post_id": post_id, "account_id": account, "kind": "video", "mode": "direct",
         "video": {"uri": uri}, "privacy_level": "SELF_ONLY", "caption": "posted with kcat"}
    )  # fmt: skip
    _value, headers = encode(EventType.post_requested, data)
    envelope = {
        "type": str(EventType.post_requested),
        "data": data.model_dump(mode="json", exclude_none=True),
    }
    parts = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-k", account]
    for key, value in headers:
        parts += ["-H", f"{key}={value.decode()}"]
    return f"echo {shlex.quote(json.dumps(envelope, separators=(',', ':')))} | {shlex.join(parts)}"


def instructions(pipeline: LocalPipeline, env_file: Path) -> str:
    source = f"source {shlex.quote(str(env_file))}"
    topic = pipeline.prefix + TOPIC_POST_REQUESTED
    kcat = kcat_command(pipeline.kafka, topic, "ACCOUNT_ID", "s3://media/path/to/video.mp4", "my-post-1")
    return f"""tiktok-pipeline is up (stop it with: make down)
  sandbox (TikTok stand-in)  {pipeline.sandbox_url}
  auth_service               {pipeline.auth_url}
  publish_service            {pipeline.publish_url}
  logs                       {pipeline.work}/*.log
  API key                    {pipeline.api_key}

Connect an account (open in a browser, click Authorize; the page shows the account id):
  {pipeline.auth_url}/v1/connect

Post a video, either way:
  {source} && .venv/bin/tiktok-pipeline submit FILE --account ACCOUNT_ID --privacy SELF_ONLY --follow
  {kcat}
  (with kcat the video must already be in S3; tiktok-pipeline submit uploads a local FILE itself)
"""


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


async def amain(command: str, env: EnvReader, directory: Path) -> int:
    up = Up(env, directory)
    if command == "stop":
        stopped = await up.stop()
        say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        return 0
    was_running = set(up.running()) == set(SERVICES)
    try:
        pipeline = await up.start()
    except StartFailed as exc:
        err(f"make up failed: {exc} (log: {exc.log})")
        await up.stop()
        return 1
    if was_running:
        say("already running")
    say(instructions(pipeline, up.env_file))
    return 0


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("start", "stop"):
        err("usage: python -m tiktok_pipeline.up start|stop")
        return 2
    configure_logging("WARNING", "console")  # stdout is for the instructions
    env = EnvReader()
    stack_dir = env.string("STACK_DIR", str(ROOT / ".stack"))
    directory = Path(env.string("UP_DIR", str(Path(stack_dir) / "up"))).resolve()
    return asyncio.run(amain(sys.argv[1], env, directory))


if __name__ == "__main__":
    sys.exit(main())
