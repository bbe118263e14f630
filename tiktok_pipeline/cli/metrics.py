"""``metrics POST_ID``: a published post's views, likes, comments and shares at each slot of the
schedule, from tiktok.post.metrics (docs/insights.md)."""

from __future__ import annotations

import argparse
import contextlib

from common.errors import PipelineError
from common.kafka import TOPIC_POST_METRICS
from tiktok_pipeline.cli import reach
from tiktok_pipeline.cli.output import out
from tiktok_pipeline.cli.parsing import Subparsers
from tiktok_pipeline.cli.settings import KAFKA_VARS, CliSettings
from tiktok_pipeline.insights_read import latest_line, metrics_series, series_table


class NoMetrics(PipelineError):
    code = "no_metrics"


async def cmd_metrics(s: CliSettings, args: argparse.Namespace) -> int:
    with reach.kafka(s.kafka):
        series = await metrics_series(s.kafka, s.topic(TOPIC_POST_METRICS), args.post_id)
    if not series:
        raise NoMetrics(f"no metrics for post {args.post_id} yet")
    out.print(series_table(args.post_id, series))
    return 0


async def print_latest(s: CliSettings, post_id: str) -> None:
    """The line ``follow`` prints after ``published`` (nothing when the topic does not exist)."""
    with contextlib.suppress(PipelineError):
        out.print(latest_line(await metrics_series(s.kafka, s.topic(TOPIC_POST_METRICS), post_id, idle_s=1)))


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "metrics",
        help="print a published post's views, likes, comments and shares over time",
        description="Print every tiktok.post.metrics event of one post: one row per slot of the schedule.",
        epilog_vars=KAFKA_VARS,
    )
    p.add_argument("post_id", help="the post's id")
    p.set_defaults(run=cmd_metrics)
