"""Topic names and provisioning: ``standard_topics`` says what DESIGN.md wants, ``ensure_topics`` does it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import aiokafka.errors as ak_errors
import structlog
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from common.backoff import Backoff
from common.kafka.clients import new_admin
from common.kafka.errors import KafkaError, KafkaUnavailable, translate_error
from common.tasks import Run, sleep_or_stop, wait_or_stop

log = structlog.get_logger(__name__)

DAY_MS = 24 * 60 * 60 * 1000

# Topic names before the configurable prefix (DESIGN.md, "Topics").
TOPIC_POST_REQUESTED = "tiktok.post.requested"
TOPIC_POST_STATUS = "tiktok.post.status"
TOPIC_ACCOUNTS = "tiktok.accounts"
TOPIC_ACCESS_TOKENS = "tiktok.access-tokens"
TOPIC_TOKEN_REFRESH_REQUESTED = "tiktok.token.refresh-requested"  # noqa: S105  # a name, not a secret
TOPIC_POST_REQUESTED_DLQ = "tiktok.post.requested.dlq"
# One default everywhere (the CLI, publish_service, the manifests): the most consumers a group can use.
DEFAULT_PARTITIONS = 6

@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


class TopicAction(StrEnum):
    CREATED = "created"
    UNCHANGED = "unchanged"
    ALTERED = "altered"


def standard_topics(
    prefix: str = "", *, partitions: int = DEFAULT_PARTITIONS, replication_factor: int = 1
) -> dict[str, TopicSpec]:
    """The six topics of DESIGN.md, keyed by their unprefixed name, named ``prefix + name``."""

    def delete(days: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}

    compact = {"cleanup.policy": "compact"}
    wanted = {
        TOPIC_POST_REQUESTED: delete(7),
        TOPIC_POST_STATUS: delete(7),
        TOPIC_ACCOUNTS: compact,
        TOPIC_ACCESS_TOKENS: compact,
        TOPIC_TOKEN_REFRESH_REQUESTED: delete(1),
        TOPIC_POST_REQUESTED_DLQ: delete(30),
    }
    return {
        name: TopicSpec(
            name=f"{prefix}{name}",
            partitions=partitions,
            replication_factor=replication_factor,
            config=config,
        )
        for name, config in wanted.items()
    }


async def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    *,
    alter_config: bool = True,
    request_timeout_ms: int = 30_000,
) -> dict[str, TopicAction]:
    """Create the missing topics; bring the config of existing ones to their spec.

    Existing topics whose config differs are altered when ``alter_config`` (Kafka's AlterConfigs
    sets the topic's whole override set, so the spec must list every override the topic should
    keep). Partition counts are never changed: that would move keys to other partitions and break
    per-key ordering, so a mismatch is only logged.
    """
    wanted = {s.name: s for s in specs}
    admin = new_admin(bootstrap_servers, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        return await _ensure_topics(admin, wanted, alter_config=alter_config)
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()


async def _ensure_topics(
    admin: Any, wanted: dict[str, TopicSpec], *, alter_config: bool
) -> dict[str, TopicAction]:
    existing = set(await admin.list_topics())
    result: dict[str, TopicAction] = {}
    missing = [s for name, s in wanted.items() if name not in existing]
    if missing:
        response = await admin.create_topics(
            [
                NewTopic(
                    name=s.name,
                    num_partitions=s.partitions,
                    replication_factor=s.replication_factor,
                    topic_configs=dict(s.config),
                )
                for s in missing
            ]
        )
        for topic, error_code, *rest in response.topic_errors:
            if error_code == 0:
                result[topic] = TopicAction.CREATED
                log.info("kafka_topic_created", topic=topic)
            elif ak_errors.for_code(error_code) is ak_errors.TopicAlreadyExistsError:
                existing.add(topic)  # another replica won the race; check it like any existing one
            else:
                error = ak_errors.for_code(error_code)
                message = rest[0] if rest else ""
                raise translate_error(error(f"creating topic {topic}: {message}"))

    # Creation returns before every broker (even a single KRaft node's own metadata cache) knows the
    # topic; wait, so the caller can produce and describe right away.
    await _wait_until_known(admin, list(wanted))
    present = [wanted[name] for name in wanted if name in existing and name not in result]
    for spec in present:
        result[spec.name] = await _reconcile(admin, spec, alter_config=alter_config)
    return result


async def _wait_until_known(admin: Any, topics: list[str], within: float = 30.0) -> None:
    unknown: list[str] = topics
    try:
        async with asyncio.timeout(within):
            while True:
                described = await admin.describe_topics(topics)
                unknown = [
                    t["topic"]
                    for t in described
                    if t["error_code"] or not t["partitions"] or any(p["leader"] < 0 for p in t["partitions"])
                ]
                if not unknown:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError as e:
        raise KafkaUnavailable(f"topics not ready after {within:g}s: {', '.join(sorted(unknown))}") from e


async def _reconcile(admin: Any, spec: TopicSpec, *, alter_config: bool) -> TopicAction:
    current = await describe_topic_config(admin, spec.name)
    drift = {k: v for k, v in spec.config.items() if current.get(k) != v}
    described = await admin.describe_topics([spec.name])
    partitions = len(described[0]["partitions"]) if described else 0
    if partitions and partitions != spec.partitions:
        log.warning(
            "kafka_topic_partitions_differ", topic=spec.name, actual=partitions, wanted=spec.partitions
        )
    if not drift:
        return TopicAction.UNCHANGED
    if not alter_config:
        log.warning("kafka_topic_config_differs", topic=spec.name, differs=sorted(drift))
        return TopicAction.UNCHANGED
    responses = await admin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name, configs=dict(spec.config))]
    )
    for response in responses:
        for error_code, error_message, *_ in response.resources:
            if error_code != 0:
                error = ak_errors.for_code(error_code)
                raise translate_error(error(f"altering topic {spec.name}: {error_message}"))
    log.info("kafka_topic_config_altered", topic=spec.name, changed=sorted(drift))
    return TopicAction.ALTERED


async def describe_topic_config(admin: Any, topic: str) -> dict[str, str]:
    """The effective config of ``topic`` (defaults included), as names to values."""
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    config: dict[str, str] = {}
    for response in responses:
        for error_code, error_message, _type, _name, entries in response.resources:
            if error_code != 0:
                error = ak_errors.for_code(error_code)
                raise translate_error(error(f"describing topic {topic}: {error_message}"))
            for entry in entries:
                config[entry[0]] = entry[1]
    return config


class TopicGate:
    """Ensures a set of topics once, retrying while Kafka is away; other parts wait for it.

    ``ensure(stopping)`` returns True once the topics exist as specified (at once after the first
    success), False if ``stopping`` was set first. ``health()`` names the problem after
    ``unhealthy_after`` failed tries in a row, for ``/readyz``.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        specs: Iterable[TopicSpec],
        *,
        alter_config: bool = True,
        request_timeout_ms: int = 10_000,
        backoff: Backoff = Backoff(initial=1.0, maximum=30.0, jitter=0.2),  # noqa: B008 - frozen
        unhealthy_after: int = 3,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._specs = list(specs)
        self._alter_config = alter_config
        self._request_timeout_ms = request_timeout_ms
        self._backoff = backoff
        self._unhealthy_after = unhealthy_after
        self.ready = asyncio.Event()
        self.failures_in_a_row = 0
        self.last_error: str | None = None

    async def ensure(self, stopping: asyncio.Event) -> bool:
        while not self.ready.is_set():
            if stopping.is_set():
                return False
            try:
                await ensure_topics(
                    self._bootstrap,
                    self._specs,
                    alter_config=self._alter_config,
                    request_timeout_ms=self._request_timeout_ms,
                )
            except KafkaError as exc:
                if not exc.retriable:
                    raise
                self.failures_in_a_row += 1
                self.last_error = exc.message[:200]
                log.warning("kafka_topics_not_ensured", error=exc.message, in_a_row=self.failures_in_a_row)
                await sleep_or_stop(stopping, self._backoff.delay(self.failures_in_a_row))
            else:
                self.failures_in_a_row = 0
                self.ready.set()
        return True

    async def wait(self, stopping: asyncio.Event) -> bool:
        """Wait until another part has ensured the topics; False if ``stopping`` came first."""
        return await wait_or_stop(self.ready, stopping)

    def ensuring_first(self, run: Run) -> Run:
        """``run``, started once this gate has ensured the topics (the part that provisions them)."""

        async def gated(stopping: asyncio.Event) -> None:
            if await self.ensure(stopping):
                await run(stopping)

        return gated

    def waiting_first(self, run: Run) -> Run:
        """``run``, started once another part has ensured the topics through this gate."""

        async def gated(stopping: asyncio.Event) -> None:
            if await self.wait(stopping):
                await run(stopping)

        return gated

    def health(self) -> str | None:
        if self.failures_in_a_row < self._unhealthy_after:
            return None
        return f"topics not ensured after {self.failures_in_a_row} tries, last: {self.last_error}"
