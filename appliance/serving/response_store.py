"""Stored responses in the state DB: what the API reads and changes, and every step a background job takes.

Like the batch lines (``batch/store.py``), a background response is a job
claimed by one runner (``owner``, renewed ``claimed_at``); every change a runner
makes is a conditional UPDATE checked by its rowcount, so two gateways sharing
one database never both run it, and a result is written only by the runner
that still owns the job and only while it is still queued or in progress (a
cancel or a delete wins). A foreground response is written once, whole, when
it is answered, by the writer thread (``StoreWriter``): one transaction for all
that finish together, and the event loop never waits on the DB.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, or_, select, update
from sqlalchemy.orm import Session

from appliance.db.responses import ResponseEventRow, ResponseRow

log = logging.getLogger("appliance.responses")

ACTIVE = ("queued", "in_progress")
FINISHED = ("completed", "incomplete", "failed")
MAX_CHAIN = 1000  # responses followed back through previous_response_id
_INSERT = insert(ResponseRow.__table__)


def now() -> datetime:
    return datetime.now(UTC)


class ResponseStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- what the API reads and changes --------------------------------------------------------------------

    def get(self, response_id: str, key_id: str) -> ResponseRow | None:
        """The response, if ``key_id`` made it (another key's is as unknown as one that never was)."""
        with Session(self.engine) as session:
            row = session.get(ResponseRow, response_id)
        return row if row is not None and row.key_id == key_id else None

    def chain(self, response_id: str, key_id: str) -> list[ResponseRow] | None:
        """The response and those it continues, oldest first; None if the key has no response ``response_id``.

        A deleted (or expired) response ends the chain: what came before it is gone with it.
        """
        rows: list[ResponseRow] = []
        next_id: str | None = response_id
        with Session(self.engine) as session:
            while next_id is not None and len(rows) < MAX_CHAIN:
                row = session.get(ResponseRow, next_id)
                if row is None or row.key_id != key_id:
                    break
                rows.append(row)
                next_id = row.previous_response_id
        return rows[::-1] if rows else None

    def insert(self, rows: list[dict[str, Any]]) -> None:
        """New responses, each a dict of ``ResponseRow``'s columns (Core, no ORM session: it is the hot path's)."""
        with self.engine.begin() as connection:
            connection.execute(_INSERT, rows)

    def cancel(self, response_id: str, body: str) -> bool:
        """Cancel a queued or running response (its job stops where it is); False once it had ended."""
        with Session(self.engine) as session, session.begin():
            return session.execute(update(ResponseRow).where(ResponseRow.id == response_id,
                                                             ResponseRow.status.in_(ACTIVE))
                                   .values(status="cancelled", body=body, owner=None)).rowcount == 1

    def delete(self, response_id: str, key_id: str) -> bool:
        with Session(self.engine) as session, session.begin():
            gone = session.execute(delete(ResponseRow).where(ResponseRow.id == response_id,
                                                             ResponseRow.key_id == key_id)).rowcount
            if gone:
                session.execute(delete(ResponseEventRow).where(ResponseEventRow.response_id == response_id))
            return bool(gone)

    def events(self, response_id: str, after: int) -> list[tuple[int, str]]:
        """The kept events of a streamed background response after sequence number ``after``, in order."""
        with Session(self.engine) as session:
            return [(seq, frame) for seq, frame in session.execute(
                select(ResponseEventRow.seq, ResponseEventRow.frame)
                .where(ResponseEventRow.response_id == response_id, ResponseEventRow.seq > after)
                .order_by(ResponseEventRow.seq))]

    def status(self, response_id: str) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(select(ResponseRow.status).where(ResponseRow.id == response_id))

    # --- a background job's steps ----------------------------------------------------------------------------

    def start(self, response_id: str, owner: str, body: str) -> bool:
        """The job runs (``in_progress``), if this runner still owns it and it was not cancelled meanwhile."""
        with Session(self.engine) as session, session.begin():
            return session.execute(update(ResponseRow).where(ResponseRow.id == response_id,
                                                             ResponseRow.owner == owner,
                                                             ResponseRow.status.in_(ACTIVE))
                                   .values(status="in_progress", body=body, claimed_at=now())).rowcount == 1

    def finish(self, response_id: str, owner: str, status: str, body: str,
               events: Collection[tuple[int, str]] = ()) -> bool:
        """Write the job's result (and its last events), if this runner still owns it."""
        with Session(self.engine) as session, session.begin():
            done = session.execute(update(ResponseRow).where(ResponseRow.id == response_id,
                                                             ResponseRow.owner == owner,
                                                             ResponseRow.status.in_(ACTIVE))
                                   .values(status=status, body=body, owner=None, claimed_at=None)).rowcount == 1
            if done and events:
                self._add_events(session, response_id, events)
            return done

    def add_events(self, response_id: str, events: Collection[tuple[int, str]]) -> None:
        with Session(self.engine) as session, session.begin():
            self._add_events(session, response_id, events)

    @staticmethod
    def _add_events(session: Session, response_id: str, events: Collection[tuple[int, str]]) -> None:
        session.execute(insert(ResponseEventRow), [{"response_id": response_id, "seq": seq, "frame": frame}
                                                   for seq, frame in events])

    def renew(self, owner: str) -> set[str]:
        """This runner is alive: its claims are fresh. The ids it still owns (a cancelled or deleted job is not)."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(ResponseRow).where(ResponseRow.owner == owner, ResponseRow.status.in_(ACTIVE))
                            .values(claimed_at=now()))
            return set(session.scalars(select(ResponseRow.id).where(ResponseRow.owner == owner,
                                                                    ResponseRow.status.in_(ACTIVE))))

    def release(self, owner: str) -> None:
        """A runner stopping cleanly: its jobs are free for the next runner at once."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(ResponseRow).where(ResponseRow.owner == owner, ResponseRow.status.in_(ACTIVE))
                            .values(owner=None, claimed_at=None))

    def claim_orphans(self, owner: str, stale_s: float, limit: int = 16) -> list[ResponseRow]:
        """Background jobs of a runner that stopped (renewed no claim for ``stale_s``, or released them): now this
        runner's, each taken only if no other runner took it first. Their ``attempts`` count this claim."""
        cutoff = now() - timedelta(seconds=stale_s)
        orphaned = or_(ResponseRow.owner.is_(None), ResponseRow.claimed_at < cutoff)
        claimed = []
        with Session(self.engine) as session, session.begin():
            rows = list(session.scalars(select(ResponseRow).where(ResponseRow.status.in_(ACTIVE),
                                                                  ResponseRow.background.is_(True), orphaned)
                                        .limit(limit)))
            for row in rows:
                taken = session.execute(update(ResponseRow).where(ResponseRow.id == row.id,
                                                                  ResponseRow.status.in_(ACTIVE),
                                                                  or_(ResponseRow.owner.is_(None),
                                                                      ResponseRow.claimed_at < cutoff))
                                        .values(owner=owner, claimed_at=now(), attempts=row.attempts + 1)
                                        .execution_options(synchronize_session=False)).rowcount
                if taken:
                    row.attempts += 1
                    claimed.append(row)
            session.expunge_all()
        return claimed

    def purge(self, days: float) -> int:
        """Responses older than the retention period go, with their events (a running one stays until it ends)."""
        cutoff = now() - timedelta(days=days)
        with Session(self.engine) as session, session.begin():
            ids = list(session.scalars(select(ResponseRow.id).where(ResponseRow.created_at < cutoff,
                                                                    ResponseRow.status.not_in(ACTIVE))))
            for start in range(0, len(ids), 500):
                group = ids[start:start + 500]
                session.execute(delete(ResponseEventRow).where(ResponseEventRow.response_id.in_(group)))
                session.execute(delete(ResponseRow).where(ResponseRow.id.in_(group)))
            return len(ids)


class StoreWriter:
    """One thread that writes stored responses: each ``submit`` is committed with every other that waits with it.

    The caller awaits its commit before the client sees the end of the answer, so
    a response the client got is a response the DB has (a SIGKILL loses none),
    while the event loop itself never blocks on the DB.
    """

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self._queue: collections.deque[tuple[dict[str, Any], concurrent.futures.Future[None]]] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="responses-writer", daemon=True)
            self._thread.start()

    def submit(self, row: dict[str, Any]) -> asyncio.Future[None]:
        """Queue ``row``; the future is done once it is committed (or holds the DB's error)."""
        self.start()
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.append((row, done))
        self._wake.set()
        return asyncio.wrap_future(done)

    def close(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            stopping = self._stopping
            group = []
            while self._queue:
                group.append(self._queue.popleft())
            if group:
                self._write(group)
            if stopping and not self._queue:
                return

    def _write(self, group: list[tuple[dict[str, Any], concurrent.futures.Future[None]]]) -> None:
        try:
            self.store.insert([row for row, _done in group])
        except Exception as exc:  # one bad row must not sink the others: each alone, its own error to its caller
            if len(group) > 1:
                for one in group:
                    self._write([one])
                return
            log.exception("could not store response %s", group[0][0].get("id"))
            group[0][1].set_exception(exc)
            return
        for _row, done in group:
            done.set_result(None)
