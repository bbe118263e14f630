"""What the granted scopes allow (#12.15): post directly, send drafts only, or nothing worth connecting.

TikTok lets the creator untick scopes on the consent page, so the grant may hold fewer than asked.
``video.publish`` posts to the profile; ``video.upload`` only sends drafts to the creator's inbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from auth_service.domain.oauth_state import ConnectRefused

PUBLISH = "video.publish"
UPLOAD = "video.upload"


class PublishMode(StrEnum):
    direct = "direct"
    drafts_only = "drafts_only"


class ScopeMissing(ConnectRefused):
    code = "scope_missing"
    http_status = 403
    title = "A TikTok permission is missing"


def publish_mode(granted: Iterable[str], requested: Iterable[str]) -> PublishMode:
    """The mode this grant allows, or :class:`ScopeMissing` naming the permission to allow.

    Only what we asked for is required: an app configured without ``video.publish`` connects drafts-only.
    """
    have, asked = set(granted), set(requested)
    if PUBLISH in have:
        return PublishMode.direct
    if UPLOAD in have:
        return PublishMode.drafts_only
    wanted = PUBLISH if PUBLISH in asked or UPLOAD not in asked else UPLOAD
    raise ScopeMissing(
        f"TikTok did not grant the {wanted} permission, which posting needs "
        f"(granted: {', '.join(sorted(have)) or 'none'}); connect again and allow it"
    )
