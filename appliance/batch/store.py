"""The batch rows in the state DB: what the API reads and changes, and every step the runner takes.

Every change a runner makes is a conditional UPDATE checked by its rowcount,
so gateways sharing one database never run a line twice nor both finalize a
batch: a line is claimed only while ``queued``, its result is committed only
by the runner that still owns it, and a batch is finalized only by the runner
that claimed its finalization.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from appliance.db.batches import BatchLineRow, BatchRow
from appliance.db.database import transaction
from appliance.db.keys import owned_by
from appliance.db.paging import newest_first

ACTIVE = ("in_progress", "cancelling", "finalizing")
TERMINAL = ("completed", "failed", "expired", "cancelled")
CANCELLABLE = ("validating", "in_progress")
PAGE = 1000


def now() -> datetime:
    return datetime.now(UTC)


# One line's result, executed for many lines at once; only the runner that still owns the line stores it.
_COMMIT = (update(BatchLineRow.__table__)
           .where(BatchLineRow.batch_id == bindparam("b_batch"), BatchLineRow.line_no == bindparam("b_line"),
                  BatchLineRow.state == "running", BatchLineRow.owner == bindparam("b_owner"))
           .values(state=bindparam("b_state"), status_code=bindparam("b_status"), request_id=bindparam("b_request"),
                   result=bindparam("b_result"), finished_at=bindparam("b_finished")))


@dataclass(frozen=True)
class LineRef:
    """A queued line, with what the runner needs to run it (no second read of its row)."""

    batch_id: str
    line_no: int
    model: str
    url: str = ""
    offset: int = 0  # its bytes in the batch's input file
    length: int = 0


def by_batch(refs: Iterable[LineRef]) -> dict[str, list[LineRef]]:
    """The lines grouped by their batch, in the order given: one statement per batch, not per line."""
    groups: dict[str, list[LineRef]] = {}
    for ref in refs:
        groups.setdefault(ref.batch_id, []).append(ref)
    return groups


@dataclass(frozen=True)
class LineResult:
    """A line's answer (or error), to be committed with others of its group."""

    ref: LineRef
    ok: bool
    status_code: int
    request_id: str
    result: str


class BatchStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- what the API reads and changes --------------------------------------------------------------------

    def get(self, batch_id: str, key_id: str | None) -> BatchRow | None:
        """The batch, if ``key_id`` owns it (a key id; a tenant id: its admin; None: a box admin)."""
        with Session(self.engine) as session:
            return session.scalar(select(BatchRow).where(BatchRow.id == batch_id,
                                                  owned_by(BatchRow.key_id, key_id)))

    def list(self, key_id: str | None, status: str | None, after: str | None, limit: int) -> list[BatchRow]:
        """Newest first; ``after`` is the id of the last batch of the previous page."""
        where = [owned_by(BatchRow.key_id, key_id)]
        if status is not None:
            where.append(BatchRow.status == status)
        return newest_first(self.engine, BatchRow, limit, after, *where)

    def counts(self, batch_id: str) -> dict[str, int]:
        """How many of the batch's lines are in each state."""
        with Session(self.engine) as session:
            rows = session.execute(select(BatchLineRow.state, func.count()).where(BatchLineRow.batch_id == batch_id)
                                   .group_by(BatchLineRow.state))
            return {state: count for state, count in rows}

    def cancel(self, batch_id: str, session: Session | None = None) -> bool:
        """Stop the batch dispatching; False when it had already ended (or was cancelled). With ``session``, in the
        caller's transaction (the audit event's)."""
        with transaction(self.engine, session) as session:
            moved = session.execute(update(BatchRow).where(BatchRow.id == batch_id,
                                                           BatchRow.status.in_(CANCELLABLE))
                                    .values(status="cancelling", cancelling_at=now())).rowcount
            if moved:
                self._close_queued(session, batch_id, "cancelled")
            return bool(moved)

    # --- the runner ----------------------------------------------------------------------------------------

    def candidates(self, limit: int, skip_models: Collection[str] = ()) -> list[LineRef]:
        """Queued lines of running batches, oldest batch first (but none naming a model in ``skip_models``)."""
        query = (select(BatchLineRow.batch_id, BatchLineRow.line_no, BatchLineRow.model, BatchLineRow.url,
                        BatchLineRow.offset, BatchLineRow.length)
                 .join(BatchRow, BatchRow.id == BatchLineRow.batch_id)
                 .where(BatchLineRow.state == "queued", BatchRow.status == "in_progress")
                 .order_by(BatchRow.seq, BatchLineRow.line_no).limit(limit))
        if skip_models:
            query = query.where(BatchLineRow.model.not_in(list(skip_models)))
        with Session(self.engine) as session:
            return [LineRef(*row) for row in session.execute(query)]

    def claim(self, owner: str, refs: list[LineRef]) -> list[LineRef]:
        """The lines this runner now owns: each taken only if it was still queued (one transaction, one UPDATE
        per batch of the group)."""
        claimed = []
        with Session(self.engine) as session, session.begin():
            for batch_id, group in by_batch(refs).items():
                taken = set(session.scalars(
                    update(BatchLineRow).where(BatchLineRow.batch_id == batch_id,
                                               BatchLineRow.line_no.in_([ref.line_no for ref in group]),
                                               BatchLineRow.state == "queued")
                    .values(state="running", owner=owner, claimed_at=now()).returning(BatchLineRow.line_no)))
                claimed += [ref for ref in group if ref.line_no in taken]
        return claimed

    def commit_result(self, owner: str, ref: LineRef, ok: bool, status_code: int, request_id: str,
                      result: str) -> bool:
        """Store one line's answer, if this runner still owns it (a re-queued line belongs to another now)."""
        return sum(self.commit_results(owner, [LineResult(ref, ok, status_code, request_id, result)])) == 1

    def commit_results(self, owner: str, results: list[LineResult]) -> tuple[int, int]:
        """Store a group of answers in one transaction, each only if this runner still owns its line;
        (how many succeeded, how many failed) of those stored."""
        stored = []
        finished = now()
        with Session(self.engine) as session, session.begin():
            for ok in (True, False):
                rows = [{"b_batch": r.ref.batch_id, "b_line": r.ref.line_no, "b_state": "done" if ok else "failed",
                         "b_status": r.status_code, "b_request": r.request_id, "b_result": r.result}
                        for r in results if r.ok is ok]
                stored.append(session.connection().execute(_COMMIT, [{**row, "b_owner": owner,
                                                                      "b_finished": finished} for row in rows])
                              .rowcount if rows else 0)
        return stored[0], stored[1]

    def renew(self, owner: str) -> None:
        """This runner is alive: its claims are fresh."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(BatchLineRow).where(BatchLineRow.owner == owner, BatchLineRow.state == "running")
                            .values(claimed_at=now()))

    def requeue(self, owner: str, refs: list[LineRef]) -> None:
        """Hand lines back (their model said "not now", or they yielded to live traffic): queued again, for any
        runner (one transaction, one UPDATE per batch)."""
        with Session(self.engine) as session, session.begin():
            for batch_id, group in by_batch(refs).items():
                session.execute(update(BatchLineRow).where(BatchLineRow.batch_id == batch_id,
                                                           BatchLineRow.line_no.in_([ref.line_no for ref in group]),
                                                           BatchLineRow.owner == owner,
                                                           BatchLineRow.state == "running")
                                .values(state="queued", owner=None, claimed_at=None))

    def release(self, owner: str) -> None:
        """A runner stopping cleanly: its running lines are queued again."""
        with Session(self.engine) as session, session.begin():
            session.execute(update(BatchLineRow).where(BatchLineRow.owner == owner, BatchLineRow.state == "running")
                            .values(state="queued", owner=None, claimed_at=None))

    def requeue_stale(self, stale_s: float) -> int:
        """Lines claimed by a runner that stopped renewing (killed, cut off): queued again."""
        cutoff = now() - timedelta(seconds=stale_s)
        with Session(self.engine) as session, session.begin():
            return session.execute(update(BatchLineRow).where(BatchLineRow.state == "running",
                                                              BatchLineRow.claimed_at < cutoff)
                                   .values(state="queued", owner=None, claimed_at=None)).rowcount

    def expire_overdue(self) -> list[str]:
        """Batches past their completion window stop dispatching; their queued lines become ``expired``."""
        with Session(self.engine) as session, session.begin():
            ids = list(session.scalars(select(BatchRow.id).where(BatchRow.status == "in_progress",
                                                                 BatchRow.expires_at < now())))
            for batch_id in ids:
                self._close_queued(session, batch_id, "expired")
            return ids

    def close_cancelled(self) -> None:
        """Lines of a cancelling batch queued again (their runner died) will not run: closed as cancelled."""
        with Session(self.engine) as session, session.begin():
            for batch_id in list(session.scalars(select(BatchRow.id).where(BatchRow.status == "cancelling"))):
                self._close_queued(session, batch_id, "cancelled")

    @staticmethod
    def _close_queued(session: Session, batch_id: str, state: str) -> None:
        session.execute(update(BatchLineRow).where(BatchLineRow.batch_id == batch_id, BatchLineRow.state == "queued")
                        .values(state=state, finished_at=now()))

    def ready_to_finalize(self, stale_s: float) -> list[BatchRow]:
        """Active batches with no line queued or running, not being finalized by a live runner."""
        cutoff = now() - timedelta(seconds=stale_s)
        pending = (select(BatchLineRow.line_no).where(BatchLineRow.batch_id == BatchRow.id,
                                                      BatchLineRow.state.in_(("queued", "running"))).exists())
        query = select(BatchRow).where(BatchRow.status.in_(ACTIVE), ~pending,
                                       or_(BatchRow.finalizer.is_(None), BatchRow.finalizing_at < cutoff))
        with Session(self.engine) as session:
            return list(session.scalars(query))

    def claim_finalize(self, owner: str, batch: BatchRow, stale_s: float) -> bool:
        cutoff = now() - timedelta(seconds=stale_s)
        values: dict[str, object] = {"finalizer": owner, "finalizing_at": now()}
        if batch.status == "in_progress":
            values["status"] = "finalizing"
        with Session(self.engine) as session, session.begin():
            return session.execute(
                update(BatchRow).where(BatchRow.id == batch.id, BatchRow.status == batch.status,
                                       or_(BatchRow.finalizer.is_(None), BatchRow.finalizing_at < cutoff))
                .values(**values)).rowcount == 1

    def renew_finalize(self, owner: str, batch_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(BatchRow).where(BatchRow.id == batch_id, BatchRow.finalizer == owner)
                            .values(finalizing_at=now()))

    def finished_lines(self, batch_id: str) -> Iterator[BatchLineRow]:
        """Every line of the batch in input order, a page at a time (a batch may hold 100k lines)."""
        last = 0
        while True:
            with Session(self.engine) as session:
                page = list(session.scalars(select(BatchLineRow).where(BatchLineRow.batch_id == batch_id,
                                                                       BatchLineRow.line_no > last)
                                            .order_by(BatchLineRow.line_no).limit(PAGE)))
            yield from page
            if len(page) < PAGE:
                return
            last = page[-1].line_no

    def terminal_status(self, batch_id: str, was: str) -> str:
        counts = self.counts(batch_id)
        if was == "cancelling":
            return "cancelled"
        return "expired" if counts.get("expired") else "completed"

    def expired_for_retention(self, days: float) -> list[BatchRow]:
        cutoff = now() - timedelta(days=days)
        ended = func.coalesce(BatchRow.completed_at, BatchRow.failed_at, BatchRow.expired_at, BatchRow.cancelled_at)
        with Session(self.engine) as session:
            return list(session.scalars(select(BatchRow).where(and_(BatchRow.status.in_(TERMINAL), ended < cutoff))))

    def delete(self, batch_id: str) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(delete(BatchLineRow).where(BatchLineRow.batch_id == batch_id))
            session.execute(delete(BatchRow).where(BatchRow.id == batch_id))

    def queued_total(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).select_from(BatchLineRow)
                                  .where(BatchLineRow.state == "queued")) or 0
