"""Usage rows: written in batches, listed with a cursor, summed by model, key, backend, user or tenant, exported."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, case, func, insert, select
from sqlalchemy.orm import Session

from appliance.db.paging import in_batches, seq_page
from appliance.db.tables import UsageRow

GROUP_COLUMNS = {"model": UsageRow.model, "key": UsageRow.key_id, "backend": UsageRow.backend_id,
                 "user": UsageRow.user_id, "tenant": UsageRow.tenant_id}
EXPORT_BATCH = 1000  # rows read at a time while exporting


@dataclass(frozen=True)
class UsageFilter:
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    backend_id: str | None = None
    key_id: str | None = None  # None: every key's (admin:access)
    user_id: str | None = None
    tenant_id: str | None = None

    def clauses(self) -> list[object]:
        out: list[object] = []
        if self.start is not None:
            out.append(UsageRow.created_at >= self.start)
        if self.end is not None:
            out.append(UsageRow.created_at < self.end)
        if self.model is not None:
            out.append(UsageRow.model == self.model)
        if self.backend_id is not None:
            out.append(UsageRow.backend_id == self.backend_id)
        if self.key_id is not None:
            out.append(UsageRow.key_id == self.key_id)
        if self.user_id is not None:
            out.append(UsageRow.user_id == self.user_id)
        if self.tenant_id is not None:
            out.append(UsageRow.tenant_id == self.tenant_id)
        return out


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add_many(self, rows: Iterable[dict[str, object]]) -> None:
        rows = list(rows)
        if rows:
            with self.engine.begin() as connection:  # Core executemany: the ORM's bulk path costs 3x the CPU
                connection.execute(insert(UsageRow.__table__), rows)

    def page(self, where: UsageFilter, limit: int, cursor: int | None = None) -> tuple[list[UsageRow], int | None]:
        """Newest first; the cursor of the next page (None on the last)."""
        return seq_page(self.engine, UsageRow, limit, cursor, *where.clauses())

    def summary(self, where: UsageFilter, group_by: str) -> list[dict[str, object]]:
        """One row per group: request count and the sums of every unit."""
        group = GROUP_COLUMNS[group_by]
        query = (select(group, func.count(), func.sum(UsageRow.tokens_in), func.sum(UsageRow.tokens_out),
                        func.sum(UsageRow.images), func.sum(UsageRow.audio_seconds_in),
                        func.sum(UsageRow.audio_seconds_out), func.sum(UsageRow.characters), func.sum(UsageRow.cost))
                 .where(*where.clauses()).group_by(group).order_by(group))  # type: ignore[arg-type]
        out = []
        with Session(self.engine) as session:
            for (key, count, tokens_in, tokens_out, images, seconds_in, seconds_out, characters,
                 cost) in session.execute(query):
                tokens_in, tokens_out = int(tokens_in or 0), int(tokens_out or 0)
                seconds_in, seconds_out = float(seconds_in or 0), float(seconds_out or 0)
                out.append({"group_key": key, "request_count": int(count), "input_tokens": tokens_in,
                            "output_tokens": tokens_out, "total_tokens": tokens_in + tokens_out,
                            "images": int(images or 0), "audio_seconds_in": round(seconds_in, 3),
                            "audio_seconds_out": round(seconds_out, 3),
                            "audio_seconds": round(seconds_in + seconds_out, 3), "characters": int(characters or 0),
                            "total_cost": round(float(cost or 0), 9)})
        return out

    def batches(self, where: UsageFilter, size: int = EXPORT_BATCH) -> Iterator[list[UsageRow]]:
        """Every matching row, oldest first, ``size`` at a time: an export never holds them all."""
        return in_batches(self.engine, UsageRow, size, *where.clauses())

    def recent(self, start: datetime) -> dict[str, dict[str, float]]:
        """Per model since ``start``: requests, errors, summed latency (ms) and output tokens (the console)."""
        failed = func.sum(case((UsageRow.status_code >= 400, 1), else_=0))
        query = (select(UsageRow.model, func.count(), failed, func.sum(UsageRow.latency_ms),
                        func.sum(UsageRow.tokens_out))
                 .where(UsageRow.created_at >= start).group_by(UsageRow.model))
        with Session(self.engine) as session:
            return {model: {"requests": int(count), "errors": int(errors or 0), "latency_ms": float(latency or 0),
                            "tokens_out": int(tokens or 0)}
                    for model, count, errors, latency, tokens in session.execute(query) if model is not None}
