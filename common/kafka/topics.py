"""Topic names and provisioning: ``standard_topics`` says what DESIGN.md wants, ``ensure_topics`` does it.

Existing topics are changed only through IncrementalAlterConfigs (``common.kafka.incremental``): the
keys a spec names are SET, every other setting (an operator's, Strimzi's) keeps its value.
"""

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
from common.kafka.incremental import incremental_set
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
TOPIC_POST_METRICS = "tiktok.post.metrics"
TOPIC_ACCOUNT_STATS = "tiktok.account.stats"
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
    UPDATED = "updated"
    ALTERED = "updated"  # the older name of UPDATED (an alias: the same member)


@dataclass(frozen=True)
class TopicPlan:
    """What :func:`plan_topic` decided for one topic."""

    action: TopicAction
    changes: Mapping[str, str]


def plan_topic(spec: TopicSpec, exists: bool, current: Mapping[str, str]) -> TopicPlan:
    """Pure: create a missing topic; for an existing one, SET only the keys of the spec that differ.

    Keys the spec does not name are never touched, whatever their value.
    """
    if not exists:
        return TopicPlan(TopicAction.CREATED, dict(spec.config))
    changes = {k: v for k, v in spec.config.items() if current.get(k) != v}
    return TopicPlan(TopicAction.UPDATED if changes else TopicAction.UNCHANGED, changes)


def missing_topic_reason(absent: Iterable[str]) -> str:
    """Pure: the readiness reason for topics this client cannot see (naming each)."""
    return (
        f"Kafka topic missing (or not visible to this user): {', '.join(sorted(absent))}; create it with "
        "`tiktok-pipeline create-topics` or set KAFKA_MANAGE_TOPICS=true"
    )


def standard_topics(
    prefix: str = "", *, partitions: int = DEFAULT_PARTITIONS, replication_factor: int = 1
) -> dict[str, TopicSpec]:
    """The eight topics of DESIGN.md, keyed by their unprefixed name, named ``prefix + name``."""

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
        TOPIC_POST_METRICS: delete(30),
        TOPIC_ACCOUNT_STATS: compact,
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
    """Create the missing topics; bring the settings the specs name to their value on existing ones.

    When ``alter_config``, the keys of a spec that differ are SET with IncrementalAlterConfigs; keys
    the spec does not name are never touched, so an operator's settings survive. Partition counts
    are never changed: that would move keys to other partitions and break per-key ordering, so a
    mismatch is only logged.
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
    plan = plan_topic(spec, True, await describe_topic_config(admin, spec.name))
    described = await admin.describe_topics([spec.name])
    partitions = len(described[0]["partitions"]) if described else 0
    if partitions and partitions != spec.partitions:
        log.warning(
            "kafka_topic_partitions_differ", topic=spec.name, actual=partitions, wanted=spec.partitions
        )
    if not plan.changes:
        return TopicAction.UNCHANGED
    if not alter_config:
        log.warning("kafka_topic_config_differs", topic=spec.name, differs=sorted(plan.changes))
        return TopicAction.UNCHANGED
    await incremental_set(admin, spec.name, plan.changes)
    log.info("kafka_topic_config_set", topic=spec.name, changed=sorted(plan.changes))
    return TopicAction.UPDATED


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


async def missing_topics(
    bootstrap_servers: str, names: Iterable[str], *, request_timeout_ms: int = 10_000
) -> list[str]:
    """Which of ``names`` this client cannot see (absent, or not described to it by the ACLs)."""
    admin = new_admin(bootstrap_servers, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        present = set(await admin.list_topics())
        return sorted(set(names) - present)
    except ak_errors.KafkaError as e:
        raise translate_error(e) from e
    finally:
        await admin.close()


class TopicGate:
    """Ensures a set of topics once, retrying while Kafka is away; other parts wait for it.

    ``ensure(stopping)`` returns True once the topics exist as specified (at once after the first
    success), False if ``stopping`` was set first. With ``manage`` (``KAFKA_MANAGE_TOPICS=true``) it
    creates them and SETs the settings they own; without, it only waits until an operator has
    created them. ``health()`` names a missing topic at once, any other problem after
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
        manage: bool = True,
        recheck_missing_s: float = 5.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._specs = list(specs)
        self._alter_config = alter_config
        self._request_timeout_ms = request_timeout_ms
        self._backoff = backoff
        self._unhealthy_after = unhealthy_after
        self._manage = manage
        self._recheck_missing_s = recheck_missing_s
        self.missing: list[str] = []
        self.ready = asyncio.Event()
        self.failures_in_a_row = 0
        self.last_error: str | None = None

    async def ensure(self, stopping: asyncio.Event) -> bool:
        while not self.ready.is_set():
            if stopping.is_set():
                return False
            try:
                if self._manage:
                    await ensure_topics(
                        self._bootstrap,
                        self._specs,
                        alter_config=self._alter_config,
                        request_timeout_ms=self._request_timeout_ms,
                    )
                else:
                    self.missing = await missing_topics(
                        self._bootstrap,
                        [s.name for s in self._specs],
                        request_timeout_ms=self._request_timeout_ms,
                    )
                    if self.missing:
                        log.warning("kafka_topics_missing", topics=self.missing)
                        await sleep_or_stop(stopping, self._recheck_missing_s)
                        continue
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
        if self.missing:
            return missing_topic_reason(self.missing)
        if self.failures_in_a_row < self._unhealthy_after:
            return None
        return f"topics not ensured after {self.failures_in_a_row} tries, last: {self.last_error}"
