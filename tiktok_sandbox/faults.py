"""Fault injection: fail, slow down or cut the connection of the next N requests to an endpoint."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class FaultRule:
    fault_id: int
    endpoint: str  # request path, e.g. "/v2/post/publish/video/init/" or "/video/" for upload PUTs
    remaining: int | None  # None: until cleared
    status: int | None = None  # answer this HTTP status instead of handling the request
    error_code: str | None = None  # envelope error.code (or OAuth `error`) to answer with
    message: str | None = None
    latency_ms: int = 0  # sleep before handling
    reset_after_bytes: int | None = None  # upload PUT only: drop the connection after this many body bytes
    # The answer's shape: "wrapped" {"data":{},"error":{...}}, "flat" {"code","message","log_id"},
    # "oauth" {"error","error_description","log_id"}, "empty" (no body), "text" (`body` as text/plain).
    # None: the endpoint's own (oauth on the token and revoke paths, empty on upload PUTs, else wrapped).
    shape: str | None = None
    body: str | None = None  # the text of a "text" answer
    log_id_header: bool = True  # send `x-tt-logid`, as TikTok does (the only id of an empty answer)
    # Answer normally, then remove these top-level JSON fields, or set them to null (a malformed answer).
    drop_fields: list[str] | None = None
    null_fields: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultBook:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._ids = itertools.count(1)

    def add(self, **kwargs: Any) -> FaultRule:
        count = kwargs.pop("count", 1)
        rule = FaultRule(fault_id=next(self._ids), remaining=count, **kwargs)
        self._rules.append(rule)
        return rule

    def take(self, endpoint: str) -> FaultRule | None:
        """The first active rule for `endpoint`, consuming one of its uses."""
        for rule in self._rules:
            if rule.endpoint == endpoint:
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule
        return None

    def list(self) -> list[dict[str, Any]]:
        return [r.as_dict() for r in self._rules]

    def clear(self) -> None:
        self._rules.clear()
