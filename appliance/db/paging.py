"""Newest-first pages of a table with a ``seq`` column, the cursor being the last row's ``id`` (OpenAI's ``after``)."""

from __future__ import annotations

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
