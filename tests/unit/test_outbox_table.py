"""One outbox table: both services' migrations create exactly what ``common.outbox.outbox_ddl`` says."""

import re
from pathlib import Path

import pytest

from common.outbox import outbox_ddl

ROOT = Path(__file__).resolve().parents[2]


def _columns(sql: str) -> list[str]:
    match = re.search(r"CREATE TABLE (?:IF NOT EXISTS )?(?:\w+\.)?outbox \((.*?)\n\);", sql, re.S)
    assert match, "no outbox table in this SQL"
    return [" ".join(line.split()) for line in match.group(1).strip().splitlines()]


MIGRATIONS = ["auth_service/migrations/0001_auth_schema.sql", "publish_service/migrations/0001_publish.sql"]


@pytest.mark.parametrize("migration", MIGRATIONS)
def test_service_migration_creates_the_common_outbox_table(migration: str) -> None:
    assert _columns((ROOT / migration).read_text()) == _columns(outbox_ddl("any_schema"))
