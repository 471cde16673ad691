"""Schema versions of the state DB, with Alembic: every start upgrades the DB to the newest revision.

A DB made by release 0.1 (``create_all``, no ``alembic_version`` table) holds
exactly revision 0001's schema: it is stamped at 0001 and upgraded from there,
so its keys are kept.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

MIGRATIONS = Path(__file__).parent / "migrations"
FIRST_REVISION = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the DB to the head revision (nothing to do, the common case, costs one query)."""
    head = head_revision()
    if current_revision(engine) == head:
        return
    try:
        with engine.begin() as connection:
            config = alembic_config(connection)
            tables = set(inspect(connection).get_table_names())
            if "alembic_version" not in tables and "api_keys" in tables:
                command.stamp(config, FIRST_REVISION)  # release 0.1's create_all schema is revision 0001
            command.upgrade(config, "head")
    except Exception:
        if current_revision(engine) != head:  # not a second process (the CLI, a gateway) migrating at once
            raise
