"""``submit`` and ``follow``: put a post on ``tiktok.post.requested``, follow it on ``tiktok.post.status``."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.table import Table

from common.errors import InvalidInput
from common.events import Envelope, EventType, PostRequestedData, PostStatusData, describe_errors, encode
from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_STATUS, Producer
from common.s3 import parse_s3_uri
from tiktok_pipeline.cli import metrics, reach
from tiktok_pipeline.cli.errors import PostNotDone
from tiktok_pipeline.cli.output import console, emit_json, notice, out
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import KAFKA_VARS, S3_VARS, CliSettings
from tiktok_pipeline.follow import Timeline, bytes_progress, follow_post

DONE_STATES = ("published", "inbox_delivered")
UPLOAD_PLACEHOLDER = "s3://placeholder/not-uploaded-yet"


async def _upload_if_local(s: CliSettings, source: str, post_id: str) -> str:
    if source.startswith("s3://"):
        parse_s3_uri(source)
        return source
    path = Path(source)
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
    except OSError:
        raise InvalidInput(f"{source} is neither an s3:// URI nor a readable file") from None
    key = f"uploads/{post_id}/{path.name}"
    store = s.object_store()
    with reach.s3(s.s3_endpoint or ""):
        async with store:
            with bytes_progress(console, disable=not console.is_terminal) as progress:
                task = progress.add_task(f"uploading {path.name}", total=size)
                result = await store.upload_file(path, s.s3_bucket, key)
                progress.update(task, completed=size)
    notice(f"uploaded {result.size} bytes to s3://{s.s3_bucket}/{key}")
    return f"s3://{s.s3_bucket}/{key}"


def post_request(args: argparse.Namespace, post_id: str, uris: list[str]) -> PostRequestedData:
    """The request the arguments describe, validated as publish_service validates it."""
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
        return PostRequestedData.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"the post would be rejected: {describe_errors(exc)}") from None


async def cmd_submit(s: CliSettings, args: argparse.Namespace) -> int:
    post_id = args.post_id or f"cli-{uuid.uuid4().hex[:12]}"
    if any(not m.startswith("s3://") for m in args.media):
        s.object_store()  # configuration errors before anything is uploaded
    # A post the pipeline would refuse is refused before anything is uploaded.
    post_request(args, post_id, [m if m.startswith("s3://") else UPLOAD_PLACEHOLDER for m in args.media])
    uris = [await _upload_if_local(s, src, post_id) for src in args.media]
    request = post_request(args, post_id, uris)
    value, headers = encode(EventType.post_requested, request, correlation_id=f"cli-{uuid.uuid4().hex[:8]}")
    with reach.kafka(s.kafka):
        async with Producer(s.kafka, client_id="tiktok-pipeline-cli") as producer:
            await producer.send(s.topic(TOPIC_POST_REQUESTED), args.account, value, headers)
    result: dict[str, Any] = {"post_id": post_id, "media": uris}
    if not args.follow:
        if args.json:
            emit_json(result)
        else:
            out.print(f"submitted post {post_id}", highlight=False)
        return 0
    notice(f"submitted post {post_id}")
    return await _follow(s, post_id, args.timeout, args.json, result)


def timeline_json(timeline: Timeline) -> dict[str, Any]:
    last = timeline.last
    start = timeline.events[0][0] if timeline.events else 0.0
    return {
        "post_id": timeline.post_id,
        "state": str(last.state) if last else None,
        "publish_id": last.publish_id if last else None,
        "tiktok_post_ids": list(last.tiktok_post_ids or []) if last else [],
        "error": last.error.model_dump(mode="json") if last and last.error else None,
        "events": [
            {"at_s": round(at - start, 3), **data.model_dump(mode="json", exclude_none=True)}
            for at, data in timeline.events
        ],
    }


async def _follow(
    s: CliSettings, post_id: str, within: float, as_json: bool, extra: dict[str, Any] | None = None
) -> int:
    progress = bytes_progress(console, disable=not console.is_terminal)
    task = progress.add_task(f"{post_id}: waiting", total=None)

    def show(envelope: Envelope[PostStatusData]) -> None:
        data = envelope.data
        description = f"{post_id}: {data.state}"
        if data.progress is not None:
            progress.update(task, total=data.progress.bytes_total, completed=data.progress.bytes_sent)
        if data.error is not None:
            description += f" ({data.error.code}: {data.error.message})"
        progress.update(task, description=description)

    with reach.kafka(s.kafka), progress:
        try:
            timeline = await follow_post(
                s.kafka, s.topic(TOPIC_POST_STATUS), post_id, within=within, on_event=show
            )
        except TimeoutError as exc:
            raise PostNotDone(str(exc)) from None
    if as_json:
        emit_json({**(extra or {}), **timeline_json(timeline)})
    else:
        print_timeline(timeline)
    last = timeline.last
    if not as_json and last is not None and last.state == "published":
        await metrics.print_latest(s, post_id)
    if last is None or last.state not in DONE_STATES:
        error = f" ({last.error.code}: {last.error.message})" if last and last.error else ""
        raise PostNotDone(f"post {post_id} ended {last.state if last else 'nowhere'}{error}")
    return 0


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
    return await _follow(s, args.post_id, args.timeout, args.json)


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a post from local files or s3:// URIs",
        description="Submit a post: local files are uploaded to S3_BUCKET first, then one "
        "tiktok.post.requested event is written. With --follow, wait until the post ends.",
        epilog_vars=(*KAFKA_VARS, *S3_VARS),
    )
    p.add_argument("media", nargs="+", help="a video, or photos: local paths (uploaded first) or s3:// URIs")
    p.add_argument("--account", required=True, help="the account id to post as (see: accounts)")
    p.add_argument("--post-id", help="idempotency key of the post (default: cli-<random>)")
    p.add_argument("--kind", choices=["video", "photo"], default="video", help="what the media is")
    p.add_argument("--mode", choices=["direct", "draft"], default="direct", help="publish, or send to inbox")
    p.add_argument(
        "--transfer",
        choices=["file_upload", "pull_from_url"],
        default="file_upload",
        help="how TikTok gets it",
    )
    p.add_argument("--caption", help="video caption, or photo description")
    p.add_argument("--title", help="photo title")
    p.add_argument("--cover-index", type=int, default=0, help="which photo is the cover (0-based)")
    p.add_argument(
        "--privacy",
        choices=["PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY"],
        help="privacy level; direct posts need one the creator allows",
    )
    p.add_argument("--publish-at", help="RFC 3339 time to publish at")
    p.add_argument("--follow", action="store_true", help="follow the post until it finishes")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds --follow waits for the end")
    p.add_argument("--json", action="store_true", help="print the result (and timeline) as JSON")
    p.set_defaults(run=cmd_submit)

    p = sub.add_parser(
        "follow",
        help="follow a post's status with a progress bar",
        description="Follow one post on tiktok.post.status until it ends, then print its timeline.",
        epilog_vars=KAFKA_VARS,
    )
    p.add_argument("post_id", help="the post's id (printed by submit)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the post to end")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON")
    p.set_defaults(run=cmd_follow)
