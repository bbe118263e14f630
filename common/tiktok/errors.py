"""TikTok's failures, classified per the spec's §6.3 so callers act on attributes, not codes."""

from __future__ import annotations

from enum import StrEnum

from common.errors import PipelineError


class Action(StrEnum):
    retry = "retry"  # back off and try the same call again
    refresh = "refresh"  # refresh the access token, then retry once
    needs_user = "needs_user"  # re-authorize or change settings; do not retry
    retry_later = "retry_later"  # a daily cap: try again hours later
    never = "never"  # permanent for this request


_REFRESH = {"access_token_invalid", "access_token_expired"}
_RETRY = {
    "rate_limit_exceeded",
    "internal_error",
    "internal",
    "video_pull_failed",
    "photo_pull_failed",
    "server_error",
    "temporarily_unavailable",
}
_NEEDS_USER = {
    "scope_not_authorized",
    "unaudited_client_can_only_post_to_private_accounts",
    "privacy_level_option_mismatch",
    "app_version_check_failed",
    "scope_permission_missed",
    "invalid_grant",
    "access_denied",
}
_LATER = {"spam_risk_too_many_posts", "reached_active_user_cap", "spam_risk_too_many_pending_share"}


def classify(code: str, http_status: int | None = None) -> Action:
    if code in _REFRESH:
        return Action.refresh
    if code in _RETRY or (http_status is not None and (http_status == 429 or http_status >= 500)):
        return Action.retry
    if code in _NEEDS_USER:
        return Action.needs_user
    if code in _LATER:
        return Action.retry_later
    return Action.never


class TikTokError(PipelineError):
    """TikTok answered with an error (``error.code != "ok"``, or an OAuth ``error``), in any shape.

    ``tiktok_code`` is TikTok's code, or ``""`` when the answer carried none (an empty body, a
    text body): the message then says what came, e.g. "empty answer, HTTP 403".
    """

    code = "tiktok_error"
    http_status = 502

    def __init__(
        self,
        code: str,
        message: str,
        *,
        log_id: str | None = None,
        status: int | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message or code or "TikTok refused", code=code or None)
        self.tiktok_code = code
        self.log_id = log_id
        self.status = status
        self.endpoint = endpoint
        self.action = classify(code, status)

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        return self.action in (Action.retry, Action.refresh, Action.retry_later)

    @property
    def label(self) -> str:
        """TikTok's code, or ``http_<status>`` when it gave none (for metrics and logs)."""
        return self.tiktok_code or f"http_{self.status}"

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        code = f"{self.tiktok_code}: " if self.tiktok_code else ""
        return f"{where}{code}{self.message} (log_id={self.log_id}, http={self.status})"


class TikTokConfigError(TikTokError):
    """The answer shows our configuration is wrong (a gateway 404 for a path TikTok does not serve).

    Never retried: repeating the call cannot help until the base URL or path is fixed.
    """

    code = "tiktok_config_error"

    def __init__(
        self,
        message: str,
        *,
        log_id: str | None = None,
        status: int | None = None,
        endpoint: str = "",
        url: str = "",
    ) -> None:
        super().__init__("", message, log_id=log_id, status=status, endpoint=endpoint)
        self.url = url
        self.action = Action.never


class TikTokTransportError(PipelineError):
    """No usable answer: connection refused or reset, timeout, or a body that is not TikTok's JSON.

    ``maybe_applied`` is False only when the request surely never reached TikTok (connect failed);
    otherwise TikTok may have acted on it, and a non-idempotent call must not be blindly repeated.
    """

    code = "tiktok_unreachable"
    retriable = True
    http_status = 503

    def __init__(self, message: str, *, maybe_applied: bool, endpoint: str = "") -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied
        self.endpoint = endpoint
