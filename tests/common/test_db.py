"""common.db against a real PostgreSQL: the pool and the migrations runner."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from common.db import (
    MigrationChecksumMismatch,
    MigrationError,
    apply_migrations,
    create_pool,
    load_migrations,
    session_connection,
    validate_identifier,
)

pytestmark = pytest.mark.stack


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    # Unqualified names: the runner sets search_path to the schema. No IF NOT EXISTS, so a second
    # application would fail loudly instead of passing unnoticed.
    (directory / "0001_create_posts.sql").write_text(
        "CREATE TABLE posts (id text PRIMARY KEY, state text NOT NULL);\n"
        "CREATE INDEX posts_state ON posts (state);\n"
    )
    (directory / "0002_add_attempt.sql").write_text(
        "ALTER TABLE posts ADD COLUMN attempt integer NOT NULL DEFAULT 0;\n"
    )
    return directory


@pytest.fixture
async def pool(database_url: str):
    async with create_pool(database_url, min_size=1, max_size=4) as pool:
        yield pool


async def test_session_state_is_reset_on_release_of_a_session_connection(database_url: str) -> None:
    """A session connection's lock, LISTEN and settings are gone when it is back in the pool, even
    when its block raised; the lock is free for another session at once."""
    async with create_pool(database_url, min_size=1, max_size=1) as pool:
        with pytest.raises(RuntimeError):
            async with session_connection(pool) as conn:
                pid = conn.get_server_pid()
                assert await conn.fetchval("SELECT pg_try_advisory_lock(4242)")
                await conn.execute("LISTEN some_channel")
                await conn.execute("SET application_name = 'left-behind'")
                raise RuntimeError("the block failed")
        other = await asyncpg.connect(database_url)
        try:
            assert await other.fetchval("SELECT pg_try_advisory_lock(4242)"), "lock still held"
        finally:
            await other.close()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid  # the same session, reset
            assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
            assert await conn.fetchval("SELECT current_setting('application_name')") == "tiktok-pipeline"


async def test_an_ordinary_release_rolls_back_but_sends_no_reset_query(database_url: str) -> None:
    """Other connections get asyncpg's own reset only: a transaction left open is rolled back, but no
    reset query runs (a session setting survives: the pipeline's queries set none), so a release
    costs no round trip."""
    async with create_pool(database_url, min_size=1, max_size=1) as pool:
        await pool.execute("CREATE TEMP TABLE IF NOT EXISTS t (n int)")
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
            await conn.execute("SET application_name = 'kept'")
            await conn.execute("BEGIN")
            await conn.execute("INSERT INTO t VALUES (1)")
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM t") == 0, "the open transaction was committed"
            assert await conn.fetchval("SELECT current_setting('application_name')") == "kept"


async def test_pool_is_awaitable_as_well_as_a_context_manager(database_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=2)
    try:
        assert await pool.fetchval("SELECT current_setting('application_name')") == "tiktok-pipeline"
    finally:
        await pool.close()


async def test_second_run_is_a_no_op(pool, migrations: Path) -> None:
    first = await apply_migrations(pool, "publish", migrations)
    second = await apply_migrations(pool, "publish", migrations)

    assert first == ["0001_create_posts.sql", "0002_add_attempt.sql"]
    assert second == []
    rows = await pool.fetch(
        "SELECT version, name, checksum, applied_at FROM publish.schema_migrations ORDER BY 1"
    )
    assert [(r["version"], r["name"]) for r in rows] == [(1, "create_posts"), (2, "add_attempt")]
    assert all(len(r["checksum"]) == 64 and r["applied_at"] is not None for r in rows)
    await pool.execute("INSERT INTO publish.posts (id, state) VALUES ('p1', 'received')")
    assert await pool.fetchval("SELECT attempt FROM publish.posts WHERE id = 'p1'") == 0


async def test_new_files_are_applied_on_a_later_run(pool, migrations: Path) -> None:
    await apply_migrations(pool, "publish", migrations)
    (migrations / "0003_add_publish_id.sql").write_text("ALTER TABLE posts ADD COLUMN publish_id text;\n")

    assert await apply_migrations(pool, "publish", migrations) == ["0003_add_publish_id.sql"]


async def test_changed_applied_file_is_refused_before_anything_runs(pool, migrations: Path) -> None:
    await apply_migrations(pool, "publish", migrations)
    (migrations / "0001_create_posts.sql").write_text("CREATE TABLE posts (id text PRIMARY KEY);\n")
    (migrations / "0003_add_publish_id.sql").write_text("ALTER TABLE posts ADD COLUMN publish_id text;\n")

    with pytest.raises(
        MigrationChecksumMismatch, match=r"0001_create_posts\.sql.*changed after it was applied"
    ):
        await apply_migrations(pool, "publish", migrations)

    assert await pool.fetchval("SELECT count(*) FROM publish.schema_migrations") == 2  # 0003 not applied


async def test_failing_file_rolls_back_alone(pool, migrations: Path) -> None:
    (migrations / "0003_broken.sql").write_text(
        "ALTER TABLE posts ADD COLUMN x int;\nSELECT no_such_function();\n"
    )

    with pytest.raises(asyncpg.UndefinedFunctionError):
        await apply_migrations(pool, "publish", migrations)

    versions = await pool.fetch("SELECT version FROM publish.schema_migrations ORDER BY 1")
    assert [r["version"] for r in versions] == [1, 2]
    columns = await pool.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'publish' AND table_name = 'posts'"
    )
    assert "x" not in {r["column_name"] for r in columns}


async def test_concurrent_appliers_apply_each_file_once(database_url: str, migrations: Path) -> None:
    # The first file holds its transaction open for a moment so the two runs really overlap.
    (migrations / "0001_create_posts.sql").write_text(
        "SELECT pg_sleep(0.5);\nCREATE TABLE posts (id text PRIMARY KEY, state text NOT NULL);\n"
    )
    async with (
        create_pool(database_url, min_size=1, max_size=2) as replica_a,
        create_pool(database_url, min_size=1, max_size=2) as replica_b,
    ):
        results = await asyncio.gather(
            apply_migrations(replica_a, "publish", migrations),
            apply_migrations(replica_b, "publish", migrations),
        )
        assert sorted(results, key=len) == [[], ["0001_create_posts.sql", "0002_add_attempt.sql"]]
        assert await replica_a.fetchval("SELECT count(*) FROM publish.schema_migrations") == 2


async def test_accepts_a_connection_too(database_url: str, migrations: Path) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert len(await apply_migrations(conn, "auth", migrations)) == 2
        assert await apply_migrations(conn, "auth", migrations) == []
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["", "Publish", "1abc", "a-b", "a;drop", "x" * 64, 'a"b'])
def test_schema_name_must_be_a_plain_identifier(name: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        validate_identifier(name)


def test_badly_named_or_duplicate_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "create_posts.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"0001_create_posts\.sql"):
        load_migrations(tmp_path)
    (tmp_path / "create_posts.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations with version 0001"):
        load_migrations(tmp_path)
