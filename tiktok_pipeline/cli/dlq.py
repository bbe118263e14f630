"""``replay-dlq``: send dead letters back to ``tiktok.post.requested`` (after the cause was fixed).

Only what is on the DLQ when the command starts is replayed: a request that fails again lands on the
DLQ behind that mark and waits for the next replay, so a replay can never loop.
"""

from __future__ import annotations

import argparse
from typing import Any

from common.kafka import TOPIC_POST_REQUESTED, TOPIC_POST_REQUESTED_DLQ, Consumer, Producer
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.output import emit_json, notice, out
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import KAFKA_VARS, CliSettings


async def _replay(s: CliSettings, args: argparse.Namespace) -> list[dict[str, Any]]:
    dlq, target = s.topic(TOPIC_POST_REQUESTED_DLQ), s.topic(TOPIC_POST_REQUESTED)
    done: list[dict[str, Any]] = []
    async with (
        Consumer(s.kafka, [dlq], group_id=f"{s.topic_prefix}tiktok-pipeline-dlq-replay") as consumer,
        Producer(s.kafka, client_id="tiktok-pipeline-dlq-replay") as producer,
    ):
        assigned = consumer.raw.assignment()
        marks = await consumer.raw.end_offsets(list(assigned))
        pending = {tp for tp, end in marks.items() if (await consumer.raw.position(tp)) < end}
        while pending and len(done) < args.max:
            batch = await consumer.getmany(timeout_ms=int(args.idle_exit * 1000), max_records=100)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= marks[tp] or len(done) >= args.max:
                        pending.discard(tp)
                        break
                    # error_* and source_* describe the failed attempt, not the request
                    headers = [(k, v) for k, v in record.headers if not k.startswith(("error_", "source_"))]
                    reason = dict(record.headers).get("error_code", b"?").decode(errors="replace")
                    if not args.dry_run:
                        await producer.send(target, record.key or b"", record.value, headers)
                        await consumer.commit(record)  # only after the copy is safely on the topic
                    verb = "would replay" if args.dry_run else "replayed"
                    notice(f"{verb} {tp.partition}:{record.offset} (was {reason})")
                    done.append({"partition": tp.partition, "offset": record.offset, "error_code": reason})
                    if record.offset + 1 >= marks[tp]:
                        pending.discard(tp)
    return done


async def cmd_replay_dlq(s: CliSettings, args: argparse.Namespace) -> int:
    with reach.kafka(s.kafka):
        done = await _replay(s, args)
    if args.json:
        emit_json({"dry_run": args.dry_run, "count": len(done), "records": done})
    else:
        out.print(f"{len(done)} dead letter(s) {'found' if args.dry_run else 'replayed'}", highlight=False)
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "replay-dlq",
        help="send dead letters back to tiktok.post.requested",
        description=(__doc__ or "").split("\n", 1)[1].strip(),
        epilog_vars=KAFKA_VARS,
    )
    p.add_argument("--max", type=int, default=1000, help="replay at most this many records")
    p.add_argument(
        "--idle-exit", type=float, default=5.0, help="stop after this many seconds without records"
    )
    p.add_argument("--dry-run", action="store_true", help="only list what would be replayed")
    p.add_argument("--json", action="store_true", help="print the count and the records as JSON")
    p.set_defaults(run=cmd_replay_dlq)
