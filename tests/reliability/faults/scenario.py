"""The settings every fault run starts from: creators, sandbox behaviour, service environment, and the
per-token limits TikTok enforces (which the runs check were never exceeded)."""

from __future__ import annotations

from typing import Any

RATE_WINDOW_S = 10.0


def creators(n: int) -> list[dict[str, Any]]:
    return [
        {"username": f"creator{i}", "nickname": f"Creator {i}", "daily_post_cap": 10_000} for i in range(n)
    ]


def base_sandbox(n_creators: int) -> dict[str, Any]:
    return {
        "creators": creators(n_creators),
        "rate_window_s": RATE_WINDOW_S,
        "processing_min_s": 1.0,
        "moderation_delay_s": 1.0,
    }


BASE_ENV = {
    "TIKTOK_RATE_WINDOW_S": str(RATE_WINDOW_S),
    "PUBLISH_WORKERS": "4",
    "PUBLISH_LEASE_S": "10",
    "TIKTOK_TIMEOUT_S": "8",
    "PUBLISH_TOKEN_WAIT_S": "15",
    "AUTH_REFRESH_POLL_INTERVAL_S": "1",
    "AUTH_REFRESH_CALL_TIMEOUT_S": "5",
    "AUTH_REFRESH_LEASE_S": "20",  # a refresh answered during a Postgres outage is kept 15 s
    "AUTH_REFRESH_BACKOFF_BASE_S": "1",
    "AUTH_REFRESH_BACKOFF_CAP_S": "5",
    "AUTH_REFRESH_REQUEST_MIN_INTERVAL_S": "5",
    "LOG_LEVEL": "INFO",
}

LIMITS = {"/v2/post/publish/video/init/": 6, "/v2/post/publish/creator_info/query/": 20,
          "/v2/post/publish/status/fetch/": 30}  # fmt: skip
