"""Schema versions of the state DB, with Alembic: every start upgrades the DB to the newest revision.

A DB made by release 0.1 (``create_all``, no ``alembic_version`` table) holds
exactly revision 0001's schema: it is stamped at 0001 and upgraded from there,
so its keys are kept. Alembic itself is imported only when there is work to
do: a DB at ``HEAD`` costs one query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"
SCHEMA_LOCK = 0x5CA16121  # any constant: the PostgreSQL advisory lock that serialises migrations
HEAD = "0006"  # the newest revision in migrations/versions (a test keeps the two equal)


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision, as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:  # no alembic_version table: a new DB, or one of release 0.1
            return None


def migrate(engine: Engine) -> None:
    """Bring the DB to the head revision."""
    if current_revision(engine) == HEAD:
        return
    from alembic import command

    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Gateways sharing one database start together: one at a time migrates it.
                connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": SCHEMA_LOCK})
            config = alembic_config(connection)
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" not in tables and "api_keys" in tables:
                command.stamp(config, FIRST_REVISION)  # release 0.1's create_all schema is revision 0001
            command.upgrade(config, "head")
    except Exception:
        if current_revision(engine) != HEAD:  # not a second process (the CLI, a gateway) migrating at once
            raise
