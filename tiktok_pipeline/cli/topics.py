"""``create-topics``: the standard topics, created or reconciled (never repartitioned).

An existing topic gets only the settings we own SET (IncrementalAlterConfigs): whatever else an
operator set stays.

The options are read into :class:`TopicOptions` by :func:`topic_options`, the one place to extend
when topics get more knobs (replication, min in-sync replicas, ...).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from common.kafka import DEFAULT_PARTITIONS, ensure_topics, standard_topics
from common.kafka_provision import with_min_insync
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.output import emit_json, out
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import KAFKA_VARS, CliSettings


@dataclass(frozen=True)
class TopicOptions:
    partitions: int
    replication_factor: int = 1
    min_insync_replicas: int = 1


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_topic_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--partitions",
        type=positive_int,
        default=DEFAULT_PARTITIONS,
        help="partitions of each new topic (existing topics keep theirs)",
    )
    p.add_argument(
        "--replication-factor",
        type=positive_int,
        default=1,
        help="replicas per partition of each new topic (production: 3)",
    )
    p.add_argument(
        "--min-insync-replicas",
        type=positive_int,
        default=1,
        help="replicas that must acknowledge a write, set on every topic (production: 2)",
    )


def topic_options(args: argparse.Namespace) -> TopicOptions:
    return TopicOptions(
        partitions=args.partitions,
        replication_factor=args.replication_factor,
        min_insync_replicas=args.min_insync_replicas,
    )


async def cmd_create_topics(s: CliSettings, args: argparse.Namespace) -> int:
    options = topic_options(args)
    specs = standard_topics(
        s.topic_prefix, partitions=options.partitions, replication_factor=options.replication_factor
    )
    with reach.kafka(s.kafka):
        actions = await ensure_topics(s.kafka, with_min_insync(specs.values(), options.min_insync_replicas))
    if args.json:
        emit_json({name: str(action) for name, action in sorted(actions.items())})
    else:
        for name, action in sorted(actions.items()):
            out.print(f"{name}: {action}", highlight=False)
    return 0


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "create-topics",
        help="create the eight topics with their retention",
        description="Create the eight topics with their retention and compaction, or reconcile the "
        "settings we own (only those: an operator's other settings stay). Partition counts and "
        "replication of existing topics are never changed.",
        epilog_vars=KAFKA_VARS,
    )
    add_topic_options(p)
    p.add_argument("--json", action="store_true", help="print {topic: action} as JSON")
    p.set_defaults(run=cmd_create_topics)
