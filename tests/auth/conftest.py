"""Fixtures for auth_service tests: the real app on a loopback port, the sandbox, the stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.auth.harness import (
    Keys,
    RunningAuth,
    TopicReader,
    make_settings,
    new_sandbox_app,
    running_auth,
)
from tiktok_pipeline.local import free_port
from tiktok_sandbox.config import SandboxConfig
from tiktok_sandbox.testing import RunningSandbox, SandboxApp, run_sandbox

CREATOR = "alice"


@dataclass
class World:
    sandbox: RunningSandbox
    tiktok_app: SandboxApp
    auth: RunningAuth
    keys: Keys
    reader: TopicReader
    topic_prefix: str
    database_url: str


@pytest.fixture
def sandbox_knobs() -> dict:
    """Override in a module to change the sandbox's knobs."""
    return {"auto_approve": True, "auto_approve_creator": CREATOR}


@pytest.fixture
async def world(stack, database_url, topic_prefix, sandbox_knobs, tmp_path) -> AsyncIterator[World]:
    config = SandboxConfig(data_dir=str(tmp_path / "sandbox"), allow_http_web_redirects=True, **sandbox_knobs)
    async with run_sandbox(config) as sb:
        await sb.control.create_creator(CREATOR, nickname="Alice A.")
        port = free_port()
        app = await new_sandbox_app(sb, [port])
        keys = Keys.fresh()
        settings = make_settings(
            stack=stack,
            database_url=database_url,
            topic_prefix=topic_prefix,
            sandbox=sb,
            app=app,
            port=port,
            keys=keys,
        )
        async with running_auth(settings) as auth, TopicReader(stack.kafka_bootstrap, topic_prefix) as reader:
            yield World(sb, app, auth, keys, reader, topic_prefix, database_url)
