"""Pages of a table with a ``seq`` column: by the last row's ``id`` (OpenAI's ``after``), by the last ``seq`` (the
ScaiGrid listings' cursor), and in batches for exports that never hold a whole table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

R = TypeVar("R")


def newest_first(engine: Engine, row: type[R], limit: int, after: str | None, *where: Any) -> list[R]:
    """Up to ``limit`` rows matching ``where``, newest first, after the row whose id is ``after``."""
    table: Any = row
    query = select(table).where(*where).order_by(table.seq.desc()).limit(limit)
    with Session(engine) as session:
        if after is not None:
            seq = session.scalar(select(table.seq).where(table.id == after))
            if seq is None:
                return []
            query = query.where(table.seq < seq)
        return list(session.scalars(query))


def oldest_first(engine: Engine, row: type[R], limit: int, after: str | None, *where: Any) -> list[R]:
    """Up to ``limit`` rows matching ``where``, oldest first, after the row whose id is ``after``."""
    table: Any = row
    query = select(table).where(*where).order_by(table.seq).limit(limit)
    with Session(engine) as session:
        if after is not None:
            seq = session.scalar(select(table.seq).where(table.id == after))
            if seq is None:
                return []
            query = query.where(table.seq > seq)
        return list(session.scalars(query))


def seq_page(engine: Engine, row: type[R], limit: int, cursor: int | None, *where: Any) -> tuple[list[R], int | None]:
    """Newest first, below the ``seq`` ``cursor``; and the cursor of the next page (None on the last)."""
    table: Any = row
    query = select(table).where(*where).order_by(table.seq.desc()).limit(limit + 1)
    if cursor is not None:
        query = query.where(table.seq < cursor)
    with Session(engine) as session:
        rows = list(session.scalars(query))
        session.expunge_all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].seq if more else None  # type: ignore[attr-defined]


def in_batches(engine: Engine, row: type[R], size: int, *where: Any) -> Iterator[list[R]]:
    """Every row matching ``where``, oldest first, ``size`` at a time (keyset paging on ``seq``)."""
    table: Any = row
    after = 0
    while True:
        query = select(table).where(*where, table.seq > after).order_by(table.seq).limit(size)
        with Session(engine) as session:
            rows = list(session.scalars(query))
            session.expunge_all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq  # type: ignore[attr-defined]
