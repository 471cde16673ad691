"""Engine and schema of the state DB."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated to the newest revision; SQLite gets WAL so the CLI and the
    gateway can share it."""
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

    from appliance.db import batches, media, tables  # noqa: F401  (registers the tables on Base)
    from appliance.db.migrate import migrate

    migrate(engine)
    return engine
