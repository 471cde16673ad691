"""Schema migrations: a fresh DB is built by them, and a release 0.1 DB (and one of revision 0003, just before
tenancy) is migrated on start, keeping its keys, budgets and usage."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from appliance.accounting.budgets import Budgets
from appliance.accounting.store import UsageFilter, UsageStore
from appliance.db.database import Base, open_database
from appliance.db.keys import Budget, KeyStore, hash_key
from appliance.db.migrate import HEAD, current_revision, head_revision
from appliance.db.tables import DEFAULT_TENANT_ID, FIRST_ADMIN_ID
from appliance.permissions import PERMISSIONS
from appliance.tenancy.audit import AuditEvent, AuditLog, verify
from appliance.tenancy.caller import Directory
from tests.support.postgres import postgres_server, why_unavailable

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


# The secrets of two keys in revision-0003.sql: a DB of main just before tenancy (revision 0003), made by that
# code (keys, a budget with spend and a reservation in flight, usage rows) and dumped with sqlite3.
OPERATOR_SECRET = "sgk_YooDAsZcmqUg3lovt-rciM44OgD9spsfIHb65WWlubE"
TEAM_SECRET = "sgk_KXTC8TPsjy6kMVD5V87sPpnYig-vP5FVQcg9s5jhU90"


def fixture_db(path: Path, name: str) -> str:
    with sqlite3.connect(path) as connection:
        connection.executescript((FIXTURES / name).read_text())
    return f"sqlite:///{path}"


def test_a_release_01_key_lands_in_the_default_tenant_under_the_first_admin(tmp_path: Path) -> None:
    engine = open_database(release_01_db(tmp_path / "old.db"))
    caller = Directory(KeyStore(engine)).verify(OLD_SECRET)
    assert caller is not None
    assert (caller.tenant.id, caller.user_id, caller.role) == (DEFAULT_TENANT_ID, FIRST_ADMIN_ID, "box_admin")
    assert caller.permissions == {"models:list", "models:use"}  # what it held, no more


def test_a_revision_0003_db_keeps_every_key_budget_and_usage_row_inside_the_default_tenant(tmp_path: Path) -> None:
    engine = open_database(fixture_db(tmp_path / "0003.db", "revision-0003.sql"))
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    directory = Directory(KeyStore(engine))
    operator, team = directory.verify(OPERATOR_SECRET), directory.verify(TEAM_SECRET)
    assert operator is not None and team is not None
    assert operator.permissions == set(PERMISSIONS)  # an admin:access key of the first admin: all a box admin may
    assert (team.key.rate_limit, team.key.budget) == (60, Budget("total", tokens=1000, images=5))
    assert {key.tenant_id for key in KeyStore(engine).list()} == {DEFAULT_TENANT_ID}
    assert [key.name for key in KeyStore(engine).list() if key.revoked_at] == ["revoked one"]
    budgets = Budgets(engine, clock=lambda: datetime(2099, 1, 1, tzinfo=UTC))
    spend = {s.unit: (s.spent, s.reserved) for s in budgets.spend(team.key)}
    assert spend == {"tokens": (120, 0), "images": (0, 2)}  # the reservation in flight is kept ...
    assert budgets.release_expired() == 1  # ... and released once it expires, as before
    assert {s.unit: s.reserved for s in budgets.spend(team.key)} == {"tokens": 0, "images": 0}
    rows = UsageStore(engine).summary(UsageFilter(user_id=FIRST_ADMIN_ID, tenant_id=DEFAULT_TENANT_ID), "key")
    assert [(r["group_key"], r["request_count"], r["total_cost"]) for r in rows] == [(team.key.id, 2, 0)]
    assert verify(AuditLog(engine)).intact


def test_on_postgresql_revision_0004_moves_the_keys_and_adds_the_append_only_log(tmp_path: Path) -> None:
    if why_unavailable() is not None:
        pytest.skip(str(why_unavailable()))
    from alembic import command

    from appliance.db.migrate import alembic_config, migrate

    with postgres_server() as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0003")
            connection.execute(text(
                "INSERT INTO api_keys (id, name, key_hash, prefix, permissions, created_at, budget_period, "
                "budget_tokens) VALUES ('key_0123456789abcdef', 'before', :hash, 'sgk_x', '[\"models:use\"]', now(), "
                "'day', 50)"), {"hash": hash_key("sgk_" + "b" * 43)})
            connection.execute(text("INSERT INTO budget_spend VALUES ('key_0123456789abcdef', 'tokens', 'total', 7, "
                                    "0)"))
        migrate(engine)
        assert current_revision(engine) == head_revision()
        key = KeyStore(engine).verify("sgk_" + "b" * 43)
        assert key is not None and (key.tenant_id, key.user_id) == (DEFAULT_TENANT_ID, FIRST_ADMIN_ID)
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
            assert connection.execute(text("SELECT scope_id, spent FROM budget_spend")).all() == [
                ("key_0123456789abcdef", 7)]
        AuditLog(engine).record(AuditEvent("test.write"))
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_log"))
        engine.dispose()
