"""Readiness probes for the local stack: one real request per server, exit 0 when it answers.

    probe.py kafka 127.0.0.1:19092                      a metadata request (list topics)
    probe.py kafka-secure N                             with the KAFKA_* client settings of the
                                                        environment: N brokers answer and are unfenced
    probe.py postgres postgresql://user:pw@host:port/db  a login and SELECT 1
    probe.py s3 http://127.0.0.1:18333 KEY SECRET REGION BUCKET   an authenticated HEAD bucket

Runs with the project's virtualenv (aiokafka, asyncpg and botocore are project dependencies).
"""

from __future__ import annotations

import asyncio
import sys


async def probe_kafka(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


async def probe_kafka_secure(brokers: int) -> None:
    import os

    from common.kafka.clients import new_admin

    admin = new_admin(os.environ["KAFKA_BOOTSTRAP_SERVERS"], request_timeout_ms=5000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        if len(cluster["brokers"]) < brokers:
            raise RuntimeError(f"{len(cluster['brokers'])} of {brokers} brokers up")
    finally:
        await admin.close()


async def probe_postgres(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        value = await conn.fetchval("SELECT 1")
        if value != 1:
            raise RuntimeError(f"SELECT 1 returned {value!r}")
    finally:
        await conn.close()


def probe_s3(endpoint: str, key: str, secret: str, region: str, bucket: str) -> None:
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    client = session.create_client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=region,
        config=botocore.config.Config(
            connect_timeout=3, read_timeout=5, retries={"max_attempts": 1}, s3={"addressing_style": "path"}
        ),
    )
    try:
        client.head_bucket(Bucket=bucket)
    finally:
        client.close()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    kind, args = argv[1], argv[2:]
    try:
        if kind == "kafka":
            asyncio.run(asyncio.wait_for(probe_kafka(*args), 10))
        elif kind == "kafka-secure":
            asyncio.run(asyncio.wait_for(probe_kafka_secure(int(args[0])), 10))
        elif kind == "postgres":
            asyncio.run(asyncio.wait_for(probe_postgres(*args), 10))
        elif kind == "s3":
            probe_s3(*args)
        else:
            print(f"unknown probe {kind!r}", file=sys.stderr)
            return 2
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"; say why
        print(f"{kind} not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
