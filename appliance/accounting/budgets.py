"""Budgets that hold under concurrency, at every scope at once: reserve before a request runs, settle after.

A request belongs to several scopes (its key, the key's user, their tenant),
each with its own budget, in any of the units (tokens, images, audio seconds,
cost). Reserving is one transaction holding one conditional UPDATE per scope
and unit, ``spent + reserved + n <= limit``, whose row count says whether it
fitted: if any scope has no room the whole transaction rolls back, so a
request holds room in every scope or in none. The database serialises the
writers and the UPDATEs take their rows in one fixed order (no deadlock
between two requests of the same scopes), so any number of concurrent
requests, in one gateway or several sharing the DB, never together reserve
more than any scope's budget leaves. Settling releases the reservation and
adds the actual use, in every scope, in one transaction. A reservation left
behind by a killed gateway expires and is released by ``release_expired``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance.accounting.periods import period_bounds
from appliance.db.keys import ApiKey, Budget
from appliance.db.tables import BudgetSpendRow, ReservationRow

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Budgeted:
    """A scope with a budget: ``kind`` is key, user or tenant (what a refusal names), ``id`` its id."""

    kind: str
    id: str
    budget: Budget


@dataclass(frozen=True)
class Part:
    """One scope's and one unit's share of a reservation."""

    id: str
    scope_kind: str
    scope_id: str
    unit: str
    period: str
    period_start: str
    limit: float
    amount: float
    room: float  # what this scope had left for the request (the reservation included)


@dataclass(frozen=True)
class Reservation:
    id: str
    parts: tuple[Part, ...]

    def room(self, unit: str) -> float | None:
        """The least room any scope had in ``unit`` (None: no scope limits it)."""
        rooms = [part.room for part in self.parts if part.unit == unit]
        return min(rooms) if rooms else None

    def amount(self, unit: str) -> float:
        return max((part.amount for part in self.parts if part.unit == unit), default=0.0)

    # The first part, for callers that reserved in one scope and one unit.
    @property
    def unit(self) -> str:
        return self.parts[0].unit

    @property
    def key_id(self) -> str:
        return self.parts[0].scope_id


@dataclass(frozen=True)
class OverBudget(Exception):
    """The request would cross the budget of ``scope_kind`` in ``unit``."""

    unit: str
    limit: float
    period: str
    resets_at: datetime | None
    left: float
    scope_kind: str = "key"


@dataclass(frozen=True)
class Spend:
    unit: str
    limit: float
    spent: float
    reserved: float
    resets_at: datetime | None


class Budgets:
    def __init__(self, engine: Engine, clock: Clock = utc_now, hold_s: float = 3600.0) -> None:
        self.engine = engine
        self.clock = clock
        self.hold_s = hold_s  # a reservation older than this is a killed gateway's: released by the sweep

    def reserve(self, key: ApiKey, unit: str, amount: float) -> Reservation | None:
        """Hold ``amount`` of one key's ``unit`` budget (its other scopes aside); None when it has none."""
        if key.budget is None:
            return None
        return self.reserve_all([Budgeted("key", key.id, key.budget)], {unit: amount})

    def reserve_all(self, scopes: Sequence[Budgeted], amounts: Mapping[str, float]) -> Reservation | None:
        """Hold ``amounts`` (unit → most the request can use) in every scope whose budget limits that unit, all or
        nothing; None when no scope limits any of them. Raises OverBudget naming the first scope without room."""
        now = self.clock()
        wanted: list[tuple[Budgeted, str, str, datetime | None, float, float]] = []
        for scope in scopes:
            limits = scope.budget.limits()
            period_start, resets_at = period_bounds(scope.budget.period, now)
            for unit, amount in amounts.items():
                if unit in limits:
                    wanted.append((scope, unit, period_start, resets_at, limits[unit], float(amount)))
        if not wanted:
            return None
        wanted.sort(key=lambda w: (w[0].id, w[1], w[2]))  # one lock order for every request: no deadlock
        for scope, unit, period_start, *_ in wanted:
            self._ensure_row(scope.id, unit, period_start)
        hold = "rsv_" + secrets.token_hex(10)
        parts = []
        expires = now + timedelta(seconds=self.hold_s)
        with Session(self.engine) as session, session.begin():
            for scope, unit, period_start, resets_at, limit, amount in wanted:
                where = (BudgetSpendRow.scope_id == scope.id, BudgetSpendRow.unit == unit,
                         BudgetSpendRow.period_start == period_start)
                fitted = session.execute(
                    update(BudgetSpendRow).where(*where, BudgetSpendRow.spent + BudgetSpendRow.reserved + amount
                                                 <= limit)
                    .values(reserved=BudgetSpendRow.reserved + amount)).rowcount
                row = session.execute(select(BudgetSpendRow.spent, BudgetSpendRow.reserved).where(*where)).one()
                left = max(0.0, limit - row.spent - row.reserved)
                if not fitted:  # leaving the block rolls back what the other scopes reserved
                    raise OverBudget(unit, limit, scope.budget.period, resets_at, left, scope.kind)
                part = Part("rsp_" + secrets.token_hex(10), scope.kind, scope.id, unit, scope.budget.period,
                            period_start, limit, amount, room=left + amount)
                parts.append(part)
                session.add(ReservationRow(id=part.id, hold_id=hold, scope_id=scope.id, unit=unit,
                                           period_start=period_start, amount=amount, expires_at=expires))
        return Reservation(hold, tuple(parts))

    def settle(self, reservation: Reservation, used: float | Mapping[str, float]) -> None:
        """Release the reservation and count what the request used (unit → amount; a number: the first part's unit),
        in every scope, in the reservation's periods."""
        if not isinstance(used, Mapping):
            used = {reservation.unit: used}
        with Session(self.engine) as session, session.begin():
            for part in sorted(reservation.parts, key=lambda p: (p.scope_id, p.unit, p.period_start)):
                if session.execute(delete(ReservationRow).where(ReservationRow.id == part.id)).rowcount == 0:
                    held = 0.0  # already released by the sweep (a request longer than hold_s): count the use only
                else:
                    held = part.amount
                session.execute(
                    update(BudgetSpendRow)
                    .where(BudgetSpendRow.scope_id == part.scope_id, BudgetSpendRow.unit == part.unit,
                           BudgetSpendRow.period_start == part.period_start)
                    .values(reserved=BudgetSpendRow.reserved - held,
                            spent=BudgetSpendRow.spent + float(used.get(part.unit, 0.0))))

    def release_expired(self) -> int:
        """Release the reservations of requests that can no longer be running (their gateway was killed)."""
        released = 0
        with Session(self.engine) as session, session.begin():
            stale = session.scalars(select(ReservationRow).where(ReservationRow.expires_at < self.clock())
                                    .order_by(ReservationRow.scope_id, ReservationRow.unit)).all()
            for row in stale:
                session.execute(
                    update(BudgetSpendRow)
                    .where(BudgetSpendRow.scope_id == row.scope_id, BudgetSpendRow.unit == row.unit,
                           BudgetSpendRow.period_start == row.period_start)
                    .values(reserved=BudgetSpendRow.reserved - row.amount))
                session.delete(row)
                released += 1
        return released

    def spend(self, key: ApiKey) -> list[Spend]:
        """Each budgeted unit's limit, spend and reservations in the key's current period."""
        return self.spend_of(key.id, key.budget)

    def spend_of(self, scope_id: str, budget: Budget | None) -> list[Spend]:
        """The same for any scope (a key, a user, a tenant) and its budget."""
        if budget is None:
            return []
        period_start, resets_at = period_bounds(budget.period, self.clock())
        out = []
        with Session(self.engine) as session:
            for unit, limit in budget.limits().items():
                row = session.get(BudgetSpendRow, (scope_id, unit, period_start))
                out.append(Spend(unit, limit, row.spent if row else 0.0, row.reserved if row else 0.0, resets_at))
        return out

    def _ensure_row(self, scope_id: str, unit: str, period_start: str) -> None:
        """The period's counter row, made by whichever request comes first (a losing insert is harmless)."""
        with Session(self.engine) as session:
            if session.get(BudgetSpendRow, (scope_id, unit, period_start)) is not None:
                return
            session.add(BudgetSpendRow(scope_id=scope_id, unit=unit, period_start=period_start, spent=0.0,
                                       reserved=0.0))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
