"""Can this process's Kafka user reach the cluster and see its topics? A loop that keeps asking.

One check per interval: connect with this process's security settings and list the topics; without
``KAFKA_MANAGE_TOPICS=true`` every topic must exist (with it, the ``TopicGate`` creates them). The
check runs as a registered part (``run(stopping)``, ``health()``); its answer feeds ``/readyz`` (a
reason naming authentication, TLS, or the missing topic) and gates the parts that talk to Kafka
(``gating``), so a wrong password or an unknown CA gives one clear log line per interval instead of
every part crashing and restarting: fixing the secret and restarting recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

from common.errors import PipelineError
from common.kafka import TopicSpec, missing_topic_reason, missing_topics
from common.kafka_security import client_security, security_from_env, security_problem
from common.tasks import Run, sleep_or_stop, wait_or_stop

log = structlog.get_logger(__name__)


def describe_failure(exc: BaseException, principal: str) -> str:
    """Pure: the readable reason for a failed check (never a secret: the user name at most)."""
    kind = security_problem(exc)
    detail = exc.message if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
    if kind == "authentication":
        return (
            f"Kafka authentication failed as {principal} "
            f"(check KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD): {detail}"
        )
    if kind == "TLS":
        return f"Kafka TLS handshake failed (check KAFKA_SSL_CAFILE and the broker certificate): {detail}"
    return f"Kafka unavailable: {detail}"


def public_reason(problem: str) -> str:
    """Pure: the part of a readiness problem that /readyz may show without auth: the kind of failure
    and what to check (a user or topic name at most), without the exception text after it."""
    if problem.startswith("Kafka topic missing"):
        return problem
    if problem.startswith("topics not ensured"):
        return problem.split(", last:", 1)[0]
    return problem.split(": ", 1)[0]


async def connection_error(bootstrap_servers: str, timeout_s: float = 10.0) -> BaseException | None:
    """Why one connection (with SASL and TLS) to the first bootstrap server fails, or ``None``.

    A bare broker connection, not a client: ``common.kafka.clients`` builds every client.
    """
    from aiokafka.conn import create_conn

    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout_s * 1000), **client_security()),
            timeout_s,
        )
    except Exception as exc:  # noqa: BLE001 - the failure is the answer
        return exc
    conn.close()
    return None


class KafkaConnectivity:
    """Checks every ``interval_s``; ``problem`` is ``None`` once the last check passed."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Iterable[TopicSpec],
        *,
        manage_topics: bool,
        interval_s: float = 10.0,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topics = list(topics)
        self._manage = manage_topics
        self._interval = interval_s
        self.problem: str | None = "Kafka not checked yet"
        self.ok = asyncio.Event()

    async def check_once(self) -> str | None:
        """One check; returns (and records) the problem, or ``None`` when all is well."""
        try:
            absent = await missing_topics(self._bootstrap, [t.name for t in self._topics])
            # With KAFKA_MANAGE_TOPICS the TopicGate creates what is missing once Kafka answers.
            problem = missing_topic_reason(absent) if absent and not self._manage else None
        except (PipelineError, OSError) as exc:
            # aiokafka reports a failed bootstrap without its cause (a refused login or certificate is
            # only logged): one direct connection finds out which it was.
            cause = exc if security_problem(exc) else (await connection_error(self._bootstrap) or exc)
            problem = describe_failure(cause, security_from_env().principal)
        self.problem = problem
        if problem is None:
            self.ok.set()
        else:
            self.ok.clear()
        return problem

    async def run(self, stopping: asyncio.Event) -> None:
        """Check until ``stopping``: fast until the first success, then every interval."""
        previous: str | None = "start"
        while not stopping.is_set():
            problem = await self.check_once()
            if problem is not None:
                log.warning("kafka_not_ready", reason=problem, retry_in_s=self._interval)
            elif previous is not None:
                log.info("kafka_ready", manage_topics=self._manage, topics=len(self._topics))
            previous = problem
            if await sleep_or_stop(stopping, self._interval):
                return

    async def wait_ok(self, stopping: asyncio.Event) -> bool:
        """Wait until a check passed (``True``) or ``stopping`` is set (``False``)."""
        return await wait_or_stop(self.ok, stopping)

    def gating(self, run: Run) -> Run:
        """``run``, started once a check has passed (a part that talks to Kafka)."""

        async def gated(stopping: asyncio.Event) -> None:
            if await self.wait_ok(stopping):
                await run(stopping)

        return gated

    def health(self) -> str | None:
        """The part's health probe: the last check's problem (authentication, TLS, missing topic)."""
        return self.problem

    async def ready(self) -> None:
        """A readiness check: raises with the reason while the last check failed."""
        if self.problem is not None:
            raise RuntimeError(self.problem)
