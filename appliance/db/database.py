"""Engine and schema of the state DB."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session

from appliance.db.health import database_problem, describe
from appliance.state_dir import make_private_dir, make_private_file, tighten_if_exists


class Base(DeclarativeBase):
    pass


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema migrated to the newest revision; SQLite gets WAL so the CLI and the
    gateway can share it. A DB that cannot be used raises DatabaseProblem, with the sentence to show."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        _private_sqlite_files(Path(url.removeprefix("sqlite:///")))
    engine = create_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {},
                           pool_pre_ping=not url.startswith("sqlite"))  # a restarted server drops connections
    if url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    from appliance.db import batches, media, responses, tables  # noqa: F401  (registers the tables on Base)
    from appliance.db.migrate import migrate

    try:
        migrate(engine)
    except SQLAlchemyError as exc:
        raise describe(engine.url, exc) from exc
    if (problem := database_problem(engine)) is not None:
        raise problem
    return engine


def _private_sqlite_files(path: Path) -> None:
    """The DB holds key hashes: 0600 before SQLite opens it, so its -wal and -shm (which copy its mode) are too."""
    make_private_dir(path.parent)
    make_private_file(path)
    for companion in ("-wal", "-shm", "-journal"):
        tighten_if_exists(path.with_name(path.name + companion))


@contextlib.contextmanager
def transaction(engine: Engine, session: Session | None = None) -> Iterator[Session]:
    """``session`` when given (the change is part of the caller's transaction, e.g. with its audit event), or a new
    one, committed at the end."""
    if session is not None:
        yield session
        return
    with Session(engine) as own, own.begin():
        yield own
