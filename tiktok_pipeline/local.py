"""The whole pipeline on this machine: the TikTok sandbox and both services as real processes.

Used by ``make demo`` and by the CLI's tests. Needs the stack's variables (``.stack/env``). Each run
gets its own database, topic prefix, ports, keys and secrets, so runs never see each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urljoin, urlparse

import aiohttp
import asyncpg

from common.cipher import generate_key
from common.kafka import ensure_topics, standard_topics
from common.s3 import ObjectStore
from common.settings import EnvReader

ROOT = Path(__file__).resolve().parent.parent
CLIENT_KEY = "sbxdemo"
CREATOR = "demo_creator"


class StartFailed(Exception):
    """A process did not come up; ``log`` is where to read why."""

    def __init__(self, message: str, log: Path | None) -> None:
        super().__init__(message)
        self.log = log


class ProcessHandle(Protocol):
    """What the pipeline needs of a started process (``asyncio.subprocess.Process`` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


@dataclass
class Service:
    name: str
    log: Path
    process: ProcessHandle | None = None


class Launcher(Protocol):
    """How a process of the pipeline is started, seen and stopped: from this checkout, or from the
    image (:mod:`tiktok_pipeline.image_run`)."""

    def path(self, host_path: Path) -> str:
        """Where a file under the pipeline's work directory appears to the process."""
        ...

    async def launch(self, name: str, args: list[str], env: dict[str, str], log: Path) -> ProcessHandle: ...

    async def signal(self, process: ProcessHandle, sig: signal.Signals) -> None: ...

    async def finished(self, process: ProcessHandle) -> None:
        """Wait until the process and whatever it started have exited."""
        ...


class HostLauncher:
    """``python -m ...`` from this checkout, with this interpreter and the caller's environment."""

    def path(self, host_path: Path) -> str:
        return str(host_path)

    async def launch(self, name: str, args: list[str], env: dict[str, str], log: Path) -> ProcessHandle:
        with log.open("ab") as handle:
            return await asyncio.create_subprocess_exec(
                sys.executable, *args, stdout=handle, stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **env}, cwd=ROOT,
            )  # fmt: skip

    async def signal(self, process: ProcessHandle, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)

    async def finished(self, process: ProcessHandle) -> None:
        await process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalPipeline:
    env: EnvReader
    work: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    services: list[Service] = field(default_factory=list)
    database_url: str = ""
    creators: tuple[str, ...] = (CREATOR,)
    sandbox_overrides: dict[str, object] = field(default_factory=dict)
    """Extra SandboxConfig knobs, e.g. ``{"access_token_ttl_s": 60}``."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Extra variables for both services (e.g. tuning), applied after the defaults."""
    launcher: Launcher = field(default_factory=HostLauncher)
    """How the sandbox and the services are started (from the checkout unless told otherwise)."""

    def __post_init__(self) -> None:
        self.kafka = self.env.string("KAFKA_BOOTSTRAP_SERVERS")
        self.admin_database_url = self.env.string("DATABASE_URL")
        self.bucket = self.env.string("S3_BUCKET", "media")
        self.prefix = f"demo{self.run_id}."
        self.sandbox_url = f"http://127.0.0.1:{free_port()}"
        self.auth_url = f"http://127.0.0.1:{free_port()}"
        self.publish_url = f"http://127.0.0.1:{free_port()}"
        self.success_url = f"{self.auth_url}/v1/connected"
        self.client_secret = secrets.token_urlsafe(24)
        self.api_key = secrets.token_urlsafe(24)
        self.transport_keys = f"t1:{generate_key()}"
        self.token_keys = f"k1:{generate_key()}"
        self.database_name = f"demo_{self.run_id}"

    def object_store(self) -> ObjectStore:
        return ObjectStore(
            endpoint_url=self.env.string("S3_ENDPOINT_URL"),
            access_key_id=self.env.string("S3_ACCESS_KEY_ID"),
            secret_access_key=self.env.string("S3_SECRET_ACCESS_KEY"),
            region=self.env.string("S3_REGION", "us-east-1"),
        )

    def service_env(self) -> dict[str, str]:
        """What both services, and the CLI, are configured with."""
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "KAFKA_MANAGE_TOPICS": self.env.string("KAFKA_MANAGE_TOPICS", "true"),
            "TOPIC_PREFIX": self.prefix,
            "TIKTOK_API_BASE": self.sandbox_url,
            "TIKTOK_AUTHORIZE_URL": f"{self.sandbox_url}/v2/auth/authorize/",
            "TIKTOK_CLIENT_KEY": CLIENT_KEY,
            "TIKTOK_CLIENT_SECRET": self.client_secret,
            "TRANSPORT_KEYS": self.transport_keys,
            "API_KEY": self.api_key,
            "LOG_FORMAT": "json",
            "HTTP_HOST": "127.0.0.1",
            "S3_ENDPOINT_URL": self.env.string("S3_ENDPOINT_URL"),
            "S3_ACCESS_KEY_ID": self.env.string("S3_ACCESS_KEY_ID"),
            "S3_SECRET_ACCESS_KEY": self.env.string("S3_SECRET_ACCESS_KEY"),
            "S3_REGION": self.env.string("S3_REGION", "us-east-1"),
            "S3_ALLOWED_BUCKETS": self.bucket,
            "S3_BUCKET": self.bucket,
            "AUTH_SERVICE_URL": self.auth_url,
            # auth_service only
            "TIKTOK_APP_TYPE": "desktop",
            "OAUTH_REDIRECT_URI": f"{self.auth_url}/v1/oauth/callback",
            "CONNECT_SUCCESS_URL": self.success_url,
            "TOKEN_KEYS": self.token_keys,
            **self.extra_env,
        }

    # ------------------------------------------------------------------ processes

    async def start_process(self, name: str, args: list[str], extra_env: dict[str, str]) -> Service:
        log = self.work / f"{name}.log"
        service = Service(name, log)
        service.process = await self.launcher.launch(name, args, extra_env, log)
        self.services.append(service)
        return service

    async def wait_ready(self, service: Service, url: str, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
            while time.monotonic() < deadline:
                if service.process is not None and service.process.returncode is not None:
                    raise StartFailed(
                        f"{service.name} exited with code {service.process.returncode}", service.log
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise StartFailed(f"{service.name} was not ready at {url} within {within:.0f}s", service.log)

    async def start_sandbox(self) -> None:
        seed = {
            "data_dir": self.launcher.path(self.work / "sandbox-data"),
            "processing_min_s": 2.0,
            "moderation_delay_s": 3.0,
            "apps": [
                {
                    "client_key": CLIENT_KEY,
                    "client_secret": self.client_secret,
                    "name": "tiktok-pipeline demo",
                    "app_type": "desktop",
                    "redirect_uris": [f"{self.auth_url}/v1/oauth/callback"],
                    "webhook_url": f"{self.publish_url}/v1/webhooks/tiktok",
                }
            ],
            "creators": [{"username": c, "nickname": c.replace("_", " ").title()} for c in self.creators],
            **self.sandbox_overrides,
        }
        config = self.work / "sandbox.json"
        config.write_text(json.dumps(seed))
        port = urlparse(self.sandbox_url).port
        sandbox = await self.start_process(
            "sandbox",
            [
                "-m",
                "tiktok_sandbox",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--config",
                self.launcher.path(config),
            ],
            {"LOG_FORMAT": "json"},
        )
        await self.wait_ready(sandbox, f"{self.sandbox_url}/_sandbox/health")

    async def create_database(self) -> None:
        conn = await asyncpg.connect(self.admin_database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database_name}"')
        finally:
            await conn.close()
        self.database_url = urlparse(self.admin_database_url)._replace(path=f"/{self.database_name}").geturl()

    async def create_topics(self) -> None:
        await ensure_topics(self.kafka, standard_topics(self.prefix, partitions=3).values())

    async def start_auth(self) -> None:
        port = urlparse(self.auth_url).port
        auth = await self.start_process(
            "auth_service", ["-m", "auth_service"], {**self.service_env(), "HTTP_PORT": str(port)}
        )
        await self.wait_ready(auth, f"{self.auth_url}/readyz")

    async def start_publish(self) -> None:
        port = urlparse(self.publish_url).port
        publish = await self.start_process(
            "publish_service", ["-m", "publish_service"], {**self.service_env(), "HTTP_PORT": str(port)}
        )
        await self.wait_ready(publish, f"{self.publish_url}/readyz")

    async def start(self) -> None:
        """Everything, in order: database, sandbox, topics, auth_service, publish_service."""
        await self.create_database()
        await self.start_sandbox()
        await self.create_topics()
        await self.start_auth()
        await self.start_publish()

    async def stop(self) -> None:
        for service in reversed(self.services):
            process = service.process
            if process is None or process.returncode is not None:
                continue
            await self.launcher.signal(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.launcher.finished(process), 30)
            except TimeoutError:
                await self.launcher.signal(process, signal.SIGKILL)
                await self.launcher.finished(process)
        self.services.clear()
        if self.database_url:
            conn = await asyncpg.connect(self.admin_database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')
            finally:
                await conn.close()
            self.database_url = ""

    # ------------------------------------------------------------------ OAuth, as a browser

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    async def kill(self, name: str) -> None:
        """SIGKILL a service (a crash: no shutdown code runs)."""
        process = self.service(name).process
        if process is not None and process.returncode is None:
            await self.launcher.signal(process, signal.SIGKILL)
            await self.launcher.finished(process)

    async def restart(self, name: str) -> None:
        """Start a killed or stopped service again, on the same port, and wait until it is ready."""
        service = self.service(name)
        self.services.remove(service)
        if name == "auth_service":
            await self.start_auth()
        elif name == "publish_service":
            await self.start_publish()
        else:
            raise ValueError(f"cannot restart {name}")

    async def connect_creator(self, on_consent: object = None, creator: str = CREATOR) -> str:
        """Walk the real redirect chain as a browser would, clicking Authorize on the consent page."""
        jar = aiohttp.CookieJar(unsafe=True)  # cookies on 127.0.0.1, as a browser keeps them
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(cookie_jar=jar, timeout=timeout) as session:
            url = f"{self.auth_url}/v1/connect"
            method, form = "GET", None
            for _hop in range(10):
                async with session.request(method, url, data=form, allow_redirects=False) as response:
                    body = await response.text()
                    if response.status in (301, 302, 303, 307):
                        url = urljoin(url, response.headers["Location"])
                        method, form = "GET", None
                        if url.startswith(self.success_url):
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
                    if callable(on_consent):
                        on_consent()
                    scopes = re.findall(r'name="scope" value="([^"]+)" checked', body)
                    form = aiohttp.FormData(
                        [("request_id", match.group(1)), ("creator", creator), ("decision", "authorize")]
                        + [("scope", s) for s in scopes]
                    )
                    method, url = "POST", urljoin(url, "/v2/auth/authorize/")
            raise RuntimeError("too many redirects")
