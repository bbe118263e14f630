"""``tail``: every status event as one JSON line on stdout (unreadable records: a notice on stderr)."""

from __future__ import annotations

import argparse
from typing import Any

from common.errors import PipelineError
from common.events import PostStatusData, decode
from common.kafka import TOPIC_POST_STATUS
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.output import emit_json, notice
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import KAFKA_VARS, CliSettings
from tiktok_pipeline.follow import status_records


async def cmd_tail(s: CliSettings, args: argparse.Namespace) -> int:
    with reach.kafka(s.kafka):
        async for _key, value in status_records(
            s.kafka,
            s.topic(TOPIC_POST_STATUS),
            from_beginning=args.from_beginning,
            idle_timeout=args.idle_exit,
        ):
            try:
                envelope = decode(value, PostStatusData)
            except PipelineError as exc:
                notice(f"[yellow]unreadable status record skipped: {exc.message}[/yellow]")
                continue
            d = envelope.data
            line: dict[str, Any] = {
                "at": envelope.occurred_at.isoformat(),
                "post_id": d.post_id,
                "seq": d.seq,
                "state": d.state,
            }
            if d.progress:
                line["progress"] = f"{d.progress.bytes_sent}/{d.progress.bytes_total}"
            if d.error:
                line["error"] = d.error.code
            emit_json(line)
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "tail",
        help="print status events as JSON lines",
        description="Print every event of tiktok.post.status as one JSON line (for jq), until "
        "interrupted or idle.",
        epilog_vars=KAFKA_VARS,
    )
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest event, not at now")
    p.add_argument("--idle-exit", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(run=cmd_tail)
