"""`python -m tiktok_sandbox --host 127.0.0.1 --port 18080 [--config file.json]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import structlog
from aiohttp import web

from .app import create_app
from .config import load_config


async def serve(host: str, port: int, config_path: str | None) -> None:
    config = load_config(config_path)
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    print(f"tiktok_sandbox listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tiktok_sandbox", description="Local TikTok API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port (printed on start)")
    parser.add_argument("--config", help="JSON file with SandboxConfig keys (also $TIKTOK_SANDBOX_CONFIG)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # Logs go to stderr as JSON lines; stdout carries only the "listening on" line.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    asyncio.run(serve(args.host, args.port, args.config))


if __name__ == "__main__":
    main()
