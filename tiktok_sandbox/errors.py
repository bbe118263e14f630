"""The sandbox's exception tree: each error knows its TikTok code and HTTP status."""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every error the sandbox raises on purpose."""


class ApiError(SandboxError):
    """An error answered in the `/v2` envelope: `{"data":{},"error":{"code","message","log_id"}}`."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message


class OAuthError(SandboxError):
    """An error answered in the flat OAuth shape: `{"error","error_description","log_id"}`."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


class ControlError(SandboxError):
    """A bad request to the `/_sandbox` control API."""

    def __init__(self, http_status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
