"""Whether the state DB can be used, in one sentence that says what is wrong and how to restore it.

Checked at start (a DB that cannot be read stops the appliance with that sentence, not a traceback) and by
/ready (503 naming the DB while every keyed request would fail).
"""

from __future__ import annotations

import sqlite3
import asyncio

from sqlalchemy import Engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError

# What every keyed request reads: the schema's version and the keys.
PROBES = ("SELECT version_num FROM alembic_version", "SELECT id FROM api_keys LIMIT 1")
READY_CHECK_TIMEOUT_S = 5.0


class DatabaseProblem(RuntimeError):
    """The state DB cannot be used. ``lasting``: it is damaged (a restart will not mend it), not unreachable."""

    def __init__(self, message: str, lasting: bool) -> None:
        super().__init__(message)
        self.message = message
        self.lasting = lasting


def _where(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"the state DB {url.database}"
    return f"the state DB at {url.render_as_string(hide_password=True)}"


def describe(url: URL, exc: SQLAlchemyError | sqlite3.DatabaseError) -> DatabaseProblem:
    """The sentence for ``exc``, raised while using the DB at ``url``."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    if isinstance(exc, OperationalError):  # unreachable, locked, a full disk: it may come back by itself
        return DatabaseProblem(f"{_where(url)} cannot be used now ({reason}); check that it is reachable and "
                               "that its disk has room", lasting=False)
    if url.get_backend_name() == "sqlite":
        return DatabaseProblem(
            f"{_where(url)} is damaged ({reason}): with the appliance stopped, restore the file from a backup (or "
            "move it aside to start with an empty one: API keys, usage and batches are then lost), then start it",
            lasting=True)
    return DatabaseProblem(f"{_where(url)} cannot be read ({reason}): restore it from a backup", lasting=True)


def database_problem(engine: Engine) -> DatabaseProblem | None:
    """None when the DB answers the reads every keyed request makes, else what is wrong."""
    try:
        with engine.connect() as connection:
            for probe in PROBES:
                connection.execute(text(probe)).all()
    except SQLAlchemyError as exc:
        return describe(engine.url, exc)
    return None


async def readiness_problem(engine: Engine) -> str | None:
    """database_problem for /ready, off the event loop and bounded in time."""
    try:
        problem = await asyncio.wait_for(asyncio.to_thread(database_problem, engine), READY_CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"{_where(engine.url)} did not answer within {READY_CHECK_TIMEOUT_S:.0f} s"
    return problem.message if problem is not None else None
