"""The audit log: every mutating request, success or failure, in one append-only, hash-chained table.

An event is appended in the same transaction as the change it records
(:meth:`AuditLog.change`), or alone for a request that changed nothing (a
refusal, a failure: :meth:`AuditLog.record`). Appending first locks the
chain's head row, so events are numbered and chained one at a time whichever
process (gateway, CLI) writes them; the lock is taken at the start of the
transaction, so on SQLite it is the first write and every read after it is
current.

Each event's ``hash`` is SHA-256 over the previous event's hash and the
event's own fields; :func:`verify` walks the chain and names the first event
that was edited, deleted or moved. The migration adds triggers that refuse
UPDATE and DELETE on the table: the application can only append.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from appliance.db.paging import in_batches, seq_page
from appliance.db.tables import AuditHeadRow, AuditRow

FIELD_WIDTHS = {"action": 60, "actor_id": 64, "actor_email": 320, "actor_type": 12, "actor_key_id": 32,
                "tenant_id": 32, "resource_type": 40, "resource_id": 200, "ip_address": 64, "user_agent": 512,
                "status": 8, "request_id": 140}
GENESIS = "0" * 64  # the "previous hash" of the first event
HEAD_ID = 1
EXPORT_BATCH = 500  # rows read from the DB at a time while exporting or verifying

# The fields an event's hash covers, in this order (and their names in the API).
HASHED = ("seq", "id", "timestamp", "action", "actor_id", "actor_email", "actor_type", "actor_key_id", "tenant_id",
          "resource_type", "resource_id", "ip_address", "user_agent", "status", "request_id", "details")


@dataclass
class AuditEvent:
    """What one request did, filled in by whoever handles it (``resource_id`` may be set once it is known)."""

    action: str  # api_key.create, user.role_update, tenant.delete, model.load, …
    status: str = "SUCCESS"  # SUCCESS | FAILURE
    actor_id: str | None = None
    actor_email: str | None = None
    actor_type: str = "anonymous"  # user | service | anonymous (no valid key)
    actor_key_id: str | None = None
    tenant_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    details: dict[str, Any] | None = field(default=None)


def timestamp_text(moment: datetime) -> str:
    """The one text form of a time that the hash covers (UTC, microseconds): SQLite and PostgreSQL agree on it."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def fields_of(row: AuditRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in HASHED}
    values["timestamp"] = timestamp_text(row.timestamp)
    return values


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    payload = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((prev_hash + "\n" + payload).encode()).hexdigest()


@dataclass(frozen=True)
class AuditFilter:
    start: datetime | None = None
    end: datetime | None = None
    action: str | None = None
    actor_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    status: str | None = None
    ip_address: str | None = None
    tenant_id: str | None = None  # None: every tenant's (a box admin's view)

    def clauses(self) -> list[Any]:
        out: list[Any] = []
        if self.start is not None:
            out.append(AuditRow.timestamp >= self.start)
        if self.end is not None:
            out.append(AuditRow.timestamp < self.end)
        for name in ("action", "actor_id", "resource_type", "resource_id", "status", "ip_address", "tenant_id"):
            value = getattr(self, name)
            if value is not None:
                out.append(getattr(AuditRow, name) == value)
        return out


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: how many events it checked, and the first bad one (None: the chain is intact)."""

    checked: int
    bad_seq: int | None = None
    bad_id: str | None = None
    problem: str | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextlib.contextmanager
    def change(self, event: AuditEvent) -> Iterator[Session]:
        """A transaction for a change and its event: both commit, or neither does.

        The event is appended when the block ends without an exception; the
        block may still fill in ``event`` (the new resource's id, details).
        """
        with Session(self.engine) as session, session.begin():
            seq, prev = self._lock_head(session)
            yield session
            self._append(session, event, seq, prev)

    def record(self, event: AuditEvent) -> str:
        """Append an event on its own (a request that changed nothing); its id."""
        with Session(self.engine) as session, session.begin():
            seq, prev = self._lock_head(session)
            return self._append(session, event, seq, prev)

    @staticmethod
    def _lock_head(session: Session) -> tuple[int, str]:
        """Take the chain's head (the UPDATE locks it until commit); the new event's number and the hash before it."""
        session.execute(update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(seq=AuditHeadRow.seq + 1))
        head = session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == HEAD_ID)).one()
        return int(head.seq), str(head.hash)

    @staticmethod
    def _append(session: Session, event: AuditEvent, seq: int, prev: str) -> str:
        now = datetime.now(UTC)
        values = asdict(event)
        for name, width in FIELD_WIDTHS.items():  # what a client sent (its User-Agent) never fails the change
            if values[name] is not None:
                values[name] = str(values[name])[:width]
        row = AuditRow(seq=seq, id="audit_" + secrets.token_hex(12), timestamp=now, prev_hash=prev, hash="",
                       **values)
        row.hash = chain_hash(prev, {**{name: getattr(row, name) for name in HASHED},
                                     "timestamp": timestamp_text(now)})
        session.add(row)
        session.execute(update(AuditHeadRow).where(AuditHeadRow.id == HEAD_ID).values(hash=row.hash))
        session.flush()
        return row.id

    def get(self, event_id: str) -> AuditRow | None:
        with Session(self.engine) as session:
            row = session.scalar(select(AuditRow).where(AuditRow.id == event_id))
            if row is not None:
                session.expunge(row)
            return row

    def page(self, where: AuditFilter, limit: int, cursor: int | None = None) -> tuple[list[AuditRow], int | None]:
        """Newest first; the cursor of the next page (None on the last)."""
        return seq_page(self.engine, AuditRow, limit, cursor, *where.clauses())

    def batches(self, where: AuditFilter, size: int = EXPORT_BATCH) -> Iterator[list[AuditRow]]:
        """Every matching event, oldest first, ``size`` at a time: an export never holds the whole log."""
        return in_batches(self.engine, AuditRow, size, *where.clauses())

    def head(self) -> tuple[int, str]:
        with Session(self.engine) as session:
            head = session.execute(select(AuditHeadRow.seq, AuditHeadRow.hash)
                                   .where(AuditHeadRow.id == HEAD_ID)).one()
            return int(head.seq), str(head.hash)


def verify(log: AuditLog) -> Verdict:
    """Walk the chain from the first event; the first that was edited, deleted, moved or added by hand."""
    expected_seq, prev, checked = 1, GENESIS, 0
    last: AuditRow | None = None
    for rows in log.batches(AuditFilter()):
        for row in rows:
            if row.seq != expected_seq:
                missing = row.seq - expected_seq
                what = (f"{missing} event(s) before it are missing (deleted)" if missing > 0
                        else "its number repeats or goes back (moved)")
                return Verdict(checked, row.seq, row.id, what)
            if row.prev_hash != prev:
                return Verdict(checked, row.seq, row.id, "it does not follow the event before it (that one was "
                                                         "changed, deleted or moved)")
            if chain_hash(prev, fields_of(row)) != row.hash:
                return Verdict(checked, row.seq, row.id, "its content was edited after it was written")
            prev, expected_seq, last, checked = row.hash, expected_seq + 1, row, checked + 1
    head_seq, head_hash = log.head()
    if head_seq != checked or head_hash != prev:
        missing = head_seq - checked
        if missing > 0:
            return Verdict(checked, checked + 1, None, f"the last {missing} event(s) are missing (deleted)")
        return Verdict(checked, last.seq if last else None, last.id if last else None,
                       "the chain's head does not match its last event (events were added or changed by hand)")
    return Verdict(checked)
