"""``tiktok-pipeline``: the operator's command line.

Reads the same environment variables as the services (docs/CONVENTIONS.md), plus ``AUTH_SERVICE_URL``
(default http://127.0.0.1:8081) for the account commands and ``S3_BUCKET`` for uploads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from common.errors import InvalidInput, PipelineError
from common.events import (
    Envelope,
    EventType,
    PostRequestedData,
    PostStatusData,
    decode,
    describe_errors,
    encode,
)
from common.kafka import (
    TOPIC_POST_REQUESTED,
    TOPIC_POST_REQUESTED_DLQ,
    TOPIC_POST_STATUS,
    Consumer,
    Producer,
    standard_topics,
)
from common.kafka_provision import apply_topics, with_min_insync
from common.kafka_security import security_from_env
from common.s3 import ObjectStore, parse_s3_uri
from common.settings import EnvReader
from tiktok_pipeline.follow import Timeline, bytes_progress, follow_post, status_records

console = Console(stderr=True)
out = Console()


@dataclass(frozen=True)
class CliSettings:
    kafka: str
    topic_prefix: str
    auth_url: str
    api_key: str | None
    s3_endpoint: str | None
    s3_access_key: str | None
    s3_secret_key: str | None
    s3_region: str
    s3_bucket: str

    @classmethod
    def from_env(cls, env: EnvReader | None = None) -> CliSettings:
        env = env or EnvReader()
        return cls(
            kafka=env.string("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092"),
            topic_prefix=env.string("TOPIC_PREFIX", "") if env.optional("TOPIC_PREFIX") else "",
            auth_url=env.string("AUTH_SERVICE_URL", "http://127.0.0.1:8081").rstrip("/"),
            api_key=env.optional("API_KEY"),
            s3_endpoint=env.optional("S3_ENDPOINT_URL"),
            s3_access_key=env.optional("S3_ACCESS_KEY_ID"),
            s3_secret_key=env.optional("S3_SECRET_ACCESS_KEY"),
            s3_region=env.string("S3_REGION", "us-east-1"),
            s3_bucket=env.string("S3_BUCKET", "media"),
        )

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def object_store(self) -> ObjectStore:
        if not (self.s3_endpoint and self.s3_access_key and self.s3_secret_key):
            raise PipelineError("S3_ENDPOINT_URL, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are needed")
        return ObjectStore(
            endpoint_url=self.s3_endpoint,
            access_key_id=self.s3_access_key,
            secret_access_key=self.s3_secret_key,
            region=self.s3_region,
        )


# ------------------------------------------------------------------------------------------ commands


async def cmd_create_topics(s: CliSettings, args: argparse.Namespace) -> int:
    specs = standard_topics(
        s.topic_prefix, partitions=args.partitions, replication_factor=args.replication_factor
    )
    actions = await apply_topics(s.kafka, with_min_insync(specs.values(), args.min_insync_replicas))
    for name, action in sorted(actions.items()):
        out.print(f"{name}: {action}")
    return 0


async def _run_service_command(module: str, *args: str) -> int:
    """Run ``python -m <module> <args>``: each service owns its schema, migrations and key handling."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", module, *args)
    return await process.wait()


async def cmd_migrate(_s: CliSettings, _args: argparse.Namespace) -> int:
    for module in ("auth_service", "publish_service"):
        out.print(f"[bold]{module}[/bold]")
        code = await _run_service_command(module, "migrate")
        if code:
            return code
    return 0


async def cmd_rotate_keys(_s: CliSettings, args: argparse.Namespace) -> int:
    return await _run_service_command("auth_service", "rotate-keys", "--batch-size", str(args.batch_size))


async def cmd_connect(s: CliSettings, _args: argparse.Namespace) -> int:
    out.print("Open this URL in the creator's browser to connect a TikTok account:")
    out.print(f"  {s.auth_url}/v1/connect")
    return 0


async def _auth_get(s: CliSettings, session: aiohttp.ClientSession, path: str) -> Any:
    if not s.api_key:
        raise PipelineError("API_KEY is needed for the account commands")
    async with session.get(
        f"{s.auth_url}{path}", headers={"Authorization": f"Bearer {s.api_key}"}
    ) as response:
        body = await response.json(content_type=None)
        if response.status != 200:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise PipelineError(f"{path}: HTTP {response.status} {error.get('code')}: {error.get('message')}")
        return body


async def cmd_accounts(s: CliSettings, args: argparse.Namespace) -> int:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        body = await _auth_get(s, session, "/v1/accounts")
        accounts = body.get("accounts", []) if isinstance(body, dict) else []
        table = Table("account", "display name", "status", "scopes", "access expires", "live check")
        for account in accounts:
            live = ""
            if args.check:
                status = await _auth_get(s, session, f"/v1/accounts/{account['id']}/token-status")
                check = status.get("live", {})
                live = "valid" if check.get("valid") else f"invalid ({check.get('error') or 'unknown'})"
            table.add_row(
                account["id"],
                str(account.get("display_name") or ""),
                account.get("status", ""),
                ",".join(account.get("scopes", [])),
                str(account.get("access_expires_at") or ""),
                live,
            )
        out.print(table)
    return 0


async def _upload_if_local(s: CliSettings, source: str, post_id: str) -> str:
    if source.startswith("s3://"):
        parse_s3_uri(source)
        return source
    path = Path(source)
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError:
        raise PipelineError(f"{source} is neither an s3:// URI nor a readable file") from None
    key = f"uploads/{post_id}/{path.name}"
    async with s.object_store() as store:
        with bytes_progress(console) as progress:
            task = progress.add_task(f"uploading {path.name}", total=size)
            result = await store.upload_file(path, s.s3_bucket, key)
            progress.update(task, completed=size)
    console.print(f"uploaded {result.size} bytes to s3://{s.s3_bucket}/{key}")
    return f"s3://{s.s3_bucket}/{key}"


async def cmd_submit(s: CliSettings, args: argparse.Namespace) -> int:
    post_id = args.post_id or f"cli-{uuid.uuid4().hex[:12]}"
    uris = [await _upload_if_local(s, src, post_id) for src in args.media]
    data: dict[str, Any] = {
        "post_id": post_id,
        "account_id": args.account,
        "kind": args.kind,
        "mode": args.mode,
        "transfer": args.transfer,
    }
    if args.kind == "video":
        data["video"] = {"uri": uris[0]}
        if args.caption is not None:
            data["caption"] = args.caption
    else:
        data["photos"] = [{"uri": u} for u in uris]
        data["cover_index"] = args.cover_index
        if args.caption is not None:
            data["description"] = args.caption
        if args.title is not None:
            data["title"] = args.title
    if args.privacy:
        data["privacy_level"] = args.privacy
    if args.publish_at:
        data["publish_at"] = args.publish_at
    try:
        request = PostRequestedData.model_validate(data)  # the same validation publish_service applies
    except ValidationError as exc:
        raise InvalidInput(f"the post would be rejected: {describe_errors(exc)}") from None
    value, headers = encode(EventType.post_requested, request, correlation_id=f"cli-{uuid.uuid4().hex[:8]}")
    async with Producer(s.kafka, client_id="tiktok-pipeline-cli") as producer:
        await producer.send(s.topic(TOPIC_POST_REQUESTED), args.account, value, headers)
    out.print(f"submitted post {post_id}")
    if args.follow:
        return await _follow(s, post_id, args.timeout)
    return 0


async def _follow(s: CliSettings, post_id: str, within: float) -> int:
    progress = bytes_progress(console)
    task = progress.add_task(f"{post_id}: waiting", total=None)

    def show(envelope: Envelope[PostStatusData]) -> None:
        data = envelope.data
        description = f"{post_id}: {data.state}"
        if data.progress is not None:
            progress.update(task, total=data.progress.bytes_total, completed=data.progress.bytes_sent)
        if data.error is not None:
            description += f" ({data.error.code}: {data.error.message})"
        progress.update(task, description=description)

    with progress:
        timeline = await follow_post(
            s.kafka, s.topic(TOPIC_POST_STATUS), post_id, within=within, on_event=show
        )
    print_timeline(timeline)
    last = timeline.last
    return 0 if last is not None and last.state in ("published", "inbox_delivered") else 1


def print_timeline(timeline: Timeline) -> None:
    table = Table("seq", "state", "at (s)", "detail", title=f"post {timeline.post_id}")
    start = timeline.events[0][0] if timeline.events else 0.0
    for at, data in timeline.events:
        detail = []
        if data.publish_id:
            detail.append(f"publish_id={data.publish_id}")
        if data.tiktok_post_ids:
            detail.append(f"post_ids={','.join(data.tiktok_post_ids)}")
        if data.progress:
            detail.append(f"{data.progress.bytes_sent}/{data.progress.bytes_total} bytes")
        if data.error:
            detail.append(f"{data.error.code}: {data.error.message}")
        table.add_row(str(data.seq), str(data.state), f"{at - start:6.2f}", " ".join(detail))
    out.print(table)


async def cmd_follow(s: CliSettings, args: argparse.Namespace) -> int:
    return await _follow(s, args.post_id, args.timeout)


async def cmd_tail(s: CliSettings, args: argparse.Namespace) -> int:
    async for _key, value in status_records(
        s.kafka, s.topic(TOPIC_POST_STATUS), from_beginning=args.from_beginning, idle_timeout=args.idle_exit
    ):
        try:
            envelope = decode(value, PostStatusData)
        except PipelineError as exc:
            out.print(f"[red]unreadable status record: {exc}[/red]")
            continue
        d = envelope.data
        line = {"at": envelope.occurred_at.isoformat(), "post_id": d.post_id, "seq": d.seq, "state": d.state}
        if d.progress:
            line["progress"] = f"{d.progress.bytes_sent}/{d.progress.bytes_total}"
        if d.error:
            line["error"] = d.error.code
        out.print(json.dumps(line), soft_wrap=True, highlight=False)
    return 0


async def cmd_replay_dlq(s: CliSettings, args: argparse.Namespace) -> int:
    """Send dead letters back to ``tiktok.post.requested`` (after the cause was fixed upstream).

    Only what is on the DLQ when the command starts is replayed: a request that fails again lands on
    the DLQ behind that mark and waits for the next replay, so a replay can never loop.
    """
    dlq, target = s.topic(TOPIC_POST_REQUESTED_DLQ), s.topic(TOPIC_POST_REQUESTED)
    replayed = 0
    async with (
        Consumer(s.kafka, [dlq], group_id=f"{s.topic_prefix}tiktok-pipeline-dlq-replay") as consumer,
        Producer(s.kafka, client_id="tiktok-pipeline-dlq-replay") as producer,
    ):
        assigned = consumer.raw.assignment()
        marks = await consumer.raw.end_offsets(list(assigned))
        pending = {tp for tp, end in marks.items() if (await consumer.raw.position(tp)) < end}
        while pending and replayed < args.max:
            batch = await consumer.getmany(timeout_ms=int(args.idle_exit * 1000), max_records=100)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= marks[tp] or replayed >= args.max:
                        pending.discard(tp)
                        break
                    # error_* and source_* describe the failed attempt, not the request
                    headers = [(k, v) for k, v in record.headers if not k.startswith(("error_", "source_"))]
                    reason = dict(record.headers).get("error_code", b"?").decode(errors="replace")
                    if args.dry_run:
                        out.print(f"would replay {tp.partition}:{record.offset} (was {reason})")
                    else:
                        await producer.send(target, record.key or b"", record.value, headers)
                        await consumer.commit(record)  # only after the copy is safely on the topic
                        out.print(f"replayed {tp.partition}:{record.offset} (was {reason})")
                    replayed += 1
                    if record.offset + 1 >= marks[tp]:
                        pending.discard(tp)
    out.print(f"{replayed} dead letter(s) {'found' if args.dry_run else 'replayed'}")
    return 0


# ------------------------------------------------------------------------------------------ parsing


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tiktok-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create-topics", help="create the six topics with their retention")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--replication-factor", type=int, default=1, help="replicas per partition (production: 3)")
    p.add_argument(
        "--min-insync-replicas", type=int, default=1, help="replicas acknowledging a write (production: 2)"
    )
    p.set_defaults(run=cmd_create_topics)

    sub.add_parser("migrate", help="apply both services' database migrations").set_defaults(run=cmd_migrate)

    p = sub.add_parser("rotate-keys", help="re-encrypt every stored token under the active key")
    p.add_argument("--batch-size", type=int, default=200)
    p.set_defaults(run=cmd_rotate_keys)

    sub.add_parser("connect", help="print the URL that connects a TikTok account").set_defaults(
        run=cmd_connect
    )

    p = sub.add_parser("accounts", help="list accounts and their token status")
    p.add_argument("--check", action="store_true", help="also check each token live against TikTok")
    p.set_defaults(run=cmd_accounts)

    p = sub.add_parser("submit", help="submit a post from local files or s3:// URIs")
    p.add_argument("media", nargs="+", help="a video, or photos (local paths are uploaded first)")
    p.add_argument("--account", required=True)
    p.add_argument("--post-id")
    p.add_argument("--kind", choices=["video", "photo"], default="video")
    p.add_argument("--mode", choices=["direct", "draft"], default="direct")
    p.add_argument("--transfer", choices=["file_upload", "pull_from_url"], default="file_upload")
    p.add_argument("--caption", help="video caption, or photo description")
    p.add_argument("--title", help="photo title")
    p.add_argument("--cover-index", type=int, default=0)
    p.add_argument(
        "--privacy",
        choices=["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"],
    )
    p.add_argument("--publish-at", help="RFC 3339 time to publish at")
    p.add_argument("--follow", action="store_true", help="follow the post until it finishes")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser("follow", help="follow a post's status with a progress bar")
    p.add_argument("post_id")
    p.add_argument("--timeout", type=float, default=600.0)
    p.set_defaults(run=cmd_follow)

    p = sub.add_parser("tail", help="print status events as JSON lines")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--idle-exit", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(run=cmd_tail)

    p = sub.add_parser("replay-dlq", help="send dead letters back to tiktok.post.requested")
    p.add_argument("--max", type=int, default=1000)
    p.add_argument("--idle-exit", type=float, default=5.0)
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(run=cmd_replay_dlq)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runner: Callable[[CliSettings, argparse.Namespace], Coroutine[Any, Any, int]] = args.run
    try:
        settings = CliSettings.from_env()
        security_from_env()  # the Kafka client settings: a missing or contradictory one stops here
        return asyncio.run(runner(settings, args))
    except PipelineError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        return 2
    except TimeoutError as exc:
        console.print(f"[red]timeout:[/red] {exc}")
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
