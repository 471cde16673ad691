"""Engine and schema of the state DB."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import DeclarativeBase


SCHEMA_LOCK = 0x5CA16121  # any constant: the advisory lock that serialises schema set-up on PostgreSQL


class Base(DeclarativeBase):
    pass


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema in place; SQLite gets WAL so the CLI and the gateway can share it."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {},
                           pool_pre_ping=not url.startswith("sqlite"))  # a restarted server drops connections
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    from appliance.db import tables  # noqa: F401  (registers the tables on Base)

    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # Gateways sharing one database start together: one at a time sets up the schema.
            connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": SCHEMA_LOCK})
        Base.metadata.create_all(connection)
    return engine
