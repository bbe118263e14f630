"""Idle workers are woken by PostgreSQL NOTIFY when a post becomes due, not by their poll."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.publish.harness import Harness, running_service
from tests.publish.payloads import post_request

pytestmark = [pytest.mark.stack, pytest.mark.timeout(120)]


async def test_a_new_post_wakes_an_idle_worker_with_the_poll_an_hour_apart(
    harness: Harness, video_3s: Path
) -> None:
    await harness.connect_account("acc-1", "alice")
    video = await harness.put_file("videos/wake.mp4", video_3s)
    # With a one-hour poll, only the NOTIFY at intake (and the wait for the earliest deferred post
    # while TikTok processes) can move the post on within the test's timeout.
    settings = dataclasses.replace(harness.settings(), claim_idle_s=3600.0)
    async with running_service(settings):
        # The workers have looked for work and found none before the request exists.
        await harness.request_post(post_request("wake-1", video.uri))
        await harness.wait_state("wake-1", "validating", timeout=20)
        await harness.wait_state("wake-1", "published", timeout=45)
        # A second post, after the workers went idle again, is woken the same way.
        await harness.request_post(post_request("wake-2", video.uri))
        await harness.wait_state("wake-2", "published", timeout=45)
    assert harness.log.states("wake-1")[:2] == ["received", "validating"]
    assert len(await harness.sandbox.control.posts()) == 2
