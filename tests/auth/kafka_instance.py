"""A dedicated, single-node Kafka (KRaft) for one test, so a test can stop it without touching the
shared broker other tests use.

Uses the jars scripts/stack/kafka.sh caches under ``${XDG_CACHE_HOME:-~/.cache}/tiktok-pipeline/``
(``kafka.sh fetch`` puts them there; ``make stack-up`` runs it). Data lives in a temp dir, ports are
free loopback ports chosen once, so ``stop()`` and ``start()`` bring back the same broker with its
data at the same address::

    async with KafkaInstance(tmp_path) as kafka:
        ... kafka.bootstrap ...
        await kafka.stop()
        await kafka.start()
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tiktok_pipeline.local import free_port

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.3.1")

LOG4J = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def kafka_libs() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tiktok-pipeline"
    libs = cache / f"kafka_2.13-{KAFKA_VERSION}" / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise RuntimeError(f"no Kafka jars in {libs}: run `scripts/stack/kafka.sh fetch` (or make stack-up)")
    return libs


class KafkaInstance:
    def __init__(
        self, directory: Path, *, start_timeout: float = 90.0, cluster_id: str | None = None
    ) -> None:
        self.dir = directory
        # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding (one in 64 starts with "-").
        self.cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.port = free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._libs = kafka_libs()
        self._conf = self.dir / "server.properties"
        self._log4j = self.dir / "log4j2.properties"
        self.log = self.dir / "kafka.log"

    def _java(self, *args: str) -> list[str]:
        return [
            "java",
            "-Xms128m",
            "-Xmx384m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._log4j}",
            "-cp",
            f"{self._libs}/*",
            *args,
        ]

    def _configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        self._conf.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=3",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=3",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "auto.create.topics.enable=false",
                    "group.initial.rebalance.delay.ms=0",
                    "num.network.threads=2",
                    "num.io.threads=2",
                    "",
                ]
            )
        )
        self._log4j.write_text(LOG4J.format(log=self.log))
        subprocess.run(
            # "--cluster-id=ID" in one argument: an id that starts with "-" is not taken for an option.
            self._java(
                "kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}", "-c", str(self._conf)
            ),
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    async def start(self) -> None:
        if self._process is not None:
            return
        if not self._conf.exists():
            await asyncio.to_thread(self._configure)
        with (self.dir / "stdout.log").open("ab") as out:
            self._process = subprocess.Popen(
                self._java("kafka.Kafka", str(self._conf)),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._timeout
        try:
            while not await self.ready():
                if self._process.poll() is not None:
                    raise RuntimeError(f"Kafka exited during startup; see {self.log}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Kafka did not answer on {self.bootstrap} within {self._timeout}s")
                await asyncio.sleep(0.3)
        except BaseException:
            await self.stop()  # never leave a half-started broker behind
            raise

    async def ready(self) -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            await asyncio.wait_for(admin.start(), 5)
            await asyncio.wait_for(admin.list_topics(), 5)
        except Exception:
            return False
        finally:
            await admin.close()
        return True

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
        except TimeoutError:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def __aenter__(self) -> KafkaInstance:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
