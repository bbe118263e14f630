"""Both services on the secured three-node cluster, every Kafka client over SASL_SSL as its own user.

* A real video goes end to end and arrives byte-exact at the sandbox.
* A broker dies: while 30 posts flow, the node leading the most partitions of
  tiktok.post.requested and tiktok.post.status is SIGKILLed and later restarted. Every post is
  published once with exact bytes, every status event arrives, nothing is dead-lettered.
* A wrong password and a CA that did not sign the brokers: /readyz names authentication or TLS, one
  log line per check interval, no crash; fixing the secret and restarting recovers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from common.events import BadEvent, PostStatusData, decode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_REQUESTED_DLQ, TOPIC_POST_STATUS
from common.settings import EnvReader
from tests.publish.harness import make_video
from tests.reliability.faults.harness import Run, media_files, upload_once, wait_accounts_known
from tests.reliability.faults.scenario import BASE_ENV, LIMITS, base_sandbox, creators
from tests.reliability.faults.verdict import assert_guarantees, verify
from tests.secure.conftest import ROOT, SecureKafka
from tests.waiting import wait_for
from tiktok_pipeline.local import LocalPipeline

pytestmark = [pytest.mark.stack, pytest.mark.slow]


class UserProducer:
    """What ``Run.submit`` needs of a producer, as one Kafka user (upstream producers)."""

    def __init__(self, secure: SecureKafka, user: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=secure.bootstrap,
            enable_idempotence=True,
            acks="all",
            **secure.security(user).client_kwargs(),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, key: str, value: bytes, headers: Any) -> None:
        await self._producer.send_and_wait(topic, value, key=key.encode(), headers=list(headers))


async def read_topic(secure: SecureKafka, user: str, topic: str) -> list[bytes]:
    """Every record value on ``topic``, read to its current end as ``user`` (no group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=secure.bootstrap, enable_auto_commit=False, **secure.security(user).client_kwargs()
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        parts = [TopicPartition(topic, p) for p in await partitions_of(secure, user, topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                values.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return values


async def partitions_of(secure: SecureKafka, user: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=secure.bootstrap, **secure.security(user).client_kwargs())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert not described["error_code"], f"{user} cannot describe {topic}: {described}"
    return sorted(p["partition"] for p in described["partitions"])


class SecureRun(Run):
    secure: SecureKafka

    async def status_events(self) -> dict[str, list[tuple[str, PostStatusData]]]:
        events: dict[str, list[tuple[str, PostStatusData]]] = defaultdict(list)
        for value in await read_topic(self.secure, "dashboard", TOPIC_POST_STATUS):
            try:
                envelope = decode(value, PostStatusData)
            except BadEvent:
                continue  # the ACL test's control records on this shared cluster, not a post's

            events[envelope.data.post_id].append((str(envelope.event_id), envelope.data))
        return events


@pytest.fixture
def workdir(request: pytest.FixtureRequest) -> Any:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = ROOT / ".stack" / "secure-tests" / f"{stamp}-{request.node.name[:40]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path / "sandbox-data", ignore_errors=True)


def secure_pipeline(stack: Any, secure: SecureKafka, work: Path, n_creators: int) -> LocalPipeline:
    pipeline = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}),
        work,
        creators=tuple(c["username"] for c in creators(n_creators)),
        sandbox_overrides=base_sandbox(n_creators),
        # Topics belong to the operator here (created at RF 3 by the cluster script).
        extra_env={**BASE_ENV, "KAFKA_MANAGE_TOPICS": "false"},
    )
    # The ACLs name the topics and groups without a prefix; this cluster is the tests' own.
    pipeline.prefix = ""
    pipeline.kafka = secure.bootstrap
    return pipeline


async def start_as_own_users(pipeline: LocalPipeline, secure: SecureKafka) -> None:
    await pipeline.create_database()
    await pipeline.start_sandbox()
    pipeline.extra_env.update(secure.env("auth-service"))
    await pipeline.start_auth()
    pipeline.extra_env.update(secure.env("publish-service"))
    await pipeline.start_publish()


async def leaders(secure: SecureKafka) -> Counter[int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=secure.bootstrap, **secure.security("admin").client_kwargs()
    )
    await admin.start()
    try:
        described = await admin.describe_topics([TOPIC_POST_REQUESTED, TOPIC_POST_STATUS])
    finally:
        await admin.close()
    return Counter(p["leader"] for t in described for p in t["partitions"])


@pytest.mark.timeout(900)
async def test_a_video_end_to_end_and_a_broker_dies_while_30_posts_flow(stack, secure_kafka, workdir) -> None:
    pipeline = secure_pipeline(stack, secure_kafka, workdir, 2)
    run = SecureRun(pipeline, secure_kafka.bootstrap)
    run.secure = secure_kafka
    producer = UserProducer(secure_kafka, "upstream")
    killed: int | None = None
    try:
        await start_as_own_users(pipeline, secure_kafka)
        for c in creators(2):
            run.accounts[await pipeline.connect_creator(creator=c["username"])] = c["username"]
        accounts = sorted(run.accounts)
        await wait_accounts_known(pipeline, accounts)
        await producer.start()
        run.producer = producer  # type: ignore[assignment]  # duck-typed: only send() is used

        # 1. One real video, end to end, byte-exact.
        video = await upload_once(pipeline, make_video(workdir / "real.mp4", seconds=3))
        await run.submit("secure-e2e", accounts[0], video, None)
        states = await run.wait_all_terminal(timeout=180)
        assert states["secure-e2e"]["state"] == "published", states
        assert_guarantees(await verify(run, states, LIMITS))

        # 2. 30 posts; the busiest leader dies once a few are through, and comes back later.
        small, _ = media_files([1024 * 1024, 2 * 1024 * 1024], [])
        videos = [await upload_once(pipeline, p) for p in small]
        for i in range(30):
            await run.submit(f"kill-{i:02d}", accounts[i % 2], videos[i % 2], None)

        async def some_published() -> bool:
            post_states = await run.post_states()
            return (
                sum(1 for p, s in post_states.items() if p.startswith("kill-") and s["state"] == "published")
                >= 3
            )

        await wait_for(some_published, 120, 0.5, description="the first posts published")
        before = await leaders(secure_kafka)
        killed = before.most_common(1)[0][0]
        result = secure_kafka.script("kill", str(killed))
        assert result.returncode == 0, result.stderr
        killed_at = time.monotonic()
        # Leadership moves away from the dead node (fenced after broker.session.timeout.ms).
        await wait_for(
            lambda: _no_leader_on(secure_kafka, killed),
            60,
            0.5,
            description=f"leaders moved off node {killed}",
        )
        moved_s = time.monotonic() - killed_at
        await wait_for(
            lambda: _terminal_count(run, "kill-", 15),
            240,
            1.0,
            description="15 posts terminal with a node down",
        )
        result = secure_kafka.script("start", str(killed))
        assert result.returncode == 0, result.stderr
        killed = None
        states = await run.wait_all_terminal(timeout=300)
        verdict = await verify(run, states, LIMITS)
        summary = {"killed_node_led": before.most_common(1)[0][1], "leaders_moved_s": round(moved_s, 1)}
        print("\nBROKER LOSS " + json.dumps({**summary, **verdict.as_dict()}))
        assert_guarantees(verdict)
        assert verdict.published == 31
        dead = await read_topic(secure_kafka, "admin", TOPIC_POST_REQUESTED_DLQ)
        ours = [v for v in dead if b"kill-" in v or b"secure-e2e" in v]
        assert not ours, f"dead-lettered: {ours[:3]}"
    finally:
        if killed is not None:
            secure_kafka.script("start", str(killed))
        await producer.stop()
        await pipeline.stop()
    await wait_for(lambda: _all_nodes_answer(secure_kafka), 120, 1.0, description="the restarted node back")


async def _no_leader_on(secure: SecureKafka, node: int) -> bool:
    try:
        return node not in await leaders(secure)
    except Exception:
        return False


async def _terminal_count(run: Run, prefix: str, n: int) -> bool:
    terminal = {"published", "inbox_delivered", "failed", "rejected", "cancelled"}
    try:
        states = await run.post_states()
    except (aiohttp.ClientError, TimeoutError):
        return False
    return sum(1 for p, s in states.items() if p.startswith(prefix) and s["state"] in terminal) >= n


def _all_nodes_answer(secure: SecureKafka) -> bool:
    return secure.script("status").returncode == 0


# ------------------------------------------------------------------------------ wrong secrets


async def readyz(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http, http.get(url) as r:
        return r.status, await r.json()


def log_events(log: Path, event: str) -> int:
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("event") == event:
                count += 1
        except ValueError:
            continue
    return count


def other_ca(work: Path) -> str:
    key, cert = work / "other-ca.key", work / "other-ca.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=a CA that signed no broker", "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert)


@pytest.mark.parametrize(
    ("secret", "reason"),
    [("password", "Kafka authentication failed as User:auth-service"), ("ca", "Kafka TLS handshake failed")],
)
@pytest.mark.timeout(300)
async def test_a_wrong_secret_is_named_on_readyz_and_a_fixed_one_recovers(
    stack, secure_kafka, workdir, secret: str, reason: str
) -> None:
    pipeline = secure_pipeline(stack, secure_kafka, workdir, 1)
    wrong = (
        {"KAFKA_SASL_PASSWORD": "not-the-password"}
        if secret == "password"
        else {"KAFKA_SSL_CAFILE": other_ca(workdir)}
    )
    try:
        await pipeline.create_database()
        pipeline.extra_env.update(secure_kafka.env("auth-service", **wrong))
        service = await pipeline.start_process(
            "auth_service",
            ["-m", "auth_service"],
            {**pipeline.service_env(), "HTTP_PORT": pipeline.auth_url.rsplit(":", 1)[1]},
        )

        async def not_ready_with_reason() -> dict[str, Any] | None:
            try:
                status, body = await readyz(f"{pipeline.auth_url}/readyz")
            except (aiohttp.ClientError, TimeoutError):
                return None
            # /readyz names the kind of failure without the exception text (#12.22).
            return body if status == 503 and reason in body.get("reasons", {}).get("kafka", "") else None

        body = await wait_for(not_ready_with_reason, 60, 0.5, description=f"/readyz naming {secret}")
        print(f"\n/readyz with a wrong {secret}: {body['reasons']['kafka']}")
        assert "not-the-password" not in json.dumps(body)
        # One line per check interval (10 s), not a flood: the next two lines come 10 s apart.
        seen = log_events(service.log, "kafka_not_ready")
        marks = []
        for n in (seen + 1, seen + 2):
            await wait_for(
                lambda n=n: log_events(service.log, "kafka_not_ready") >= n,
                30,
                0.2,
                description=f"log line {n}",
            )
            marks.append(time.monotonic())
        assert marks[1] - marks[0] >= 8, f"kafka_not_ready lines {marks[1] - marks[0]:.1f}s apart"
        assert log_events(service.log, "kafka_not_ready") == seen + 2
        assert log_events(service.log, "loop_crashed") == 0
        assert service.process is not None and service.process.returncode is None, "the service exited"
        text = service.log.read_text()
        assert "not-the-password" not in text

        # Fix the secret, restart: ready.
        await pipeline.kill("auth_service")
        pipeline.extra_env.update(secure_kafka.env("auth-service"))
        await pipeline.restart("auth_service")
        status, body = await readyz(f"{pipeline.auth_url}/readyz")
        assert status == 200, body
    finally:
        await pipeline.stop()


@pytest.mark.timeout(180)
async def test_without_kafka_manage_topics_a_missing_topic_fails_readiness_by_name(stack, workdir) -> None:
    """On the plain stack: the service creates nothing; once an operator creates the topics it is ready."""
    pipeline = LocalPipeline(
        EnvReader({**stack.env(), "S3_BUCKET": "media"}), workdir, creators=("creator0",)
    )
    pipeline.extra_env["KAFKA_MANAGE_TOPICS"] = "false"
    try:
        await pipeline.create_database()
        await pipeline.start_process(
            "auth_service",
            ["-m", "auth_service"],
            {**pipeline.service_env(), "HTTP_PORT": pipeline.auth_url.rsplit(":", 1)[1]},
        )
        missing = f"{pipeline.prefix}tiktok.accounts"

        async def names_the_topic() -> str | None:
            try:
                status, body = await readyz(f"{pipeline.auth_url}/readyz")
            except (aiohttp.ClientError, TimeoutError):
                return None
            reason = body.get("reasons", {}).get("kafka", "")
            return reason if status == 503 and missing in reason else None

        reason = await wait_for(names_the_topic, 60, 0.5, description="/readyz naming the missing topic")
        print(f"\n/readyz without the topics: {reason}")
        assert "create-topics" in reason
        assert not [t for t in await _topics(stack.kafka_bootstrap) if t.startswith(pipeline.prefix)]

        await pipeline.create_topics()  # the operator's step; the next check (10 s) sees them

        async def ready() -> bool:
            status, _ = await readyz(f"{pipeline.auth_url}/readyz")
            return status == 200

        await wait_for(ready, 30, 0.5, description="ready once the topics exist")
    finally:
        await pipeline.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(pipeline.prefix)]
            if topics:
                await admin.delete_topics(topics)
        finally:
            await admin.close()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()
