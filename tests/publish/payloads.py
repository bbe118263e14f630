"""The one builder of ``tiktok.post.requested`` payloads the tests send (over Kafka or HTTP).

``post_request("p-1", uri)`` is the request most tests make: a direct, private (``SELF_ONLY``) video
post of ``acc-1`` from the object at ``uri``. Keyword overrides change or add fields; an override of
``None`` leaves the field out (e.g. ``privacy_level=None`` for a draft, which carries none).
"""

from __future__ import annotations

from typing import Any


def post_request(post_id: str, uri: str | None = None, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "post_id": post_id,
        "account_id": "acc-1",
        "kind": "video",
        "mode": "direct",
        "privacy_level": "SELF_ONLY",
    }
    if uri is not None:
        fields["video"] = {"uri": uri}
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}
