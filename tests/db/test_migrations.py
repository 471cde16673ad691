"""Schema migrations: a fresh DB is built by them, and a release 0.1 DB is migrated on start, keeping its keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from appliance.db.database import Base, open_database
from appliance.db.keys import KeyStore
from appliance.db.migrate import HEAD, current_revision, head_revision

FIXTURES = Path(__file__).parent / "fixtures"
# The secret of the one key in release-0.1.sql (a DB made by `create_all` of release 0.1, dumped with sqlite3).
OLD_SECRET = "sgk_0LVFQKielI7BnPkj9SYVmk6stEXaVcqEJvyr2knYZEg"


def release_01_db(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        connection.executescript((FIXTURES / "release-0.1.sql").read_text())
    return f"sqlite:///{path}"


def test_the_head_the_gateway_checks_is_the_newest_migration() -> None:
    assert head_revision() == HEAD


def test_a_fresh_db_is_at_the_head_revision_and_matches_the_tables(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_a_release_01_db_is_migrated_and_keeps_its_keys(tmp_path: Path) -> None:
    url = release_01_db(tmp_path / "old.db")
    engine = open_database(url)
    assert current_revision(engine) == head_revision()
    assert {"usage", "budget_spend", "budget_reservations", "media"} <= set(inspect(engine).get_table_names())
    key = KeyStore(engine).verify(OLD_SECRET)
    assert key is not None
    assert (key.name, key.permissions, key.models, key.rate_limit, key.budget) == (
        "made-by-0.1", ("models:list", "models:use"), ("scailabs/tiny-chat",), 7, None)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_opening_a_migrated_db_again_changes_nothing(tmp_path: Path) -> None:
    url = release_01_db(tmp_path / "old.db")
    open_database(url)
    engine = open_database(url)
    assert current_revision(engine) == head_revision()
    assert len(KeyStore(engine).list()) == 1
