"""``tiktok-pipeline``: the operator's command line (entry point :func:`main`)."""

from tiktok_pipeline.cli.main import main

__all__ = ["main"]
