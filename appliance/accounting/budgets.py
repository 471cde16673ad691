"""Budgets that hold under concurrency: reserve before a request runs, settle to what it used after.

A reservation is one conditional UPDATE, ``spent + reserved + n <= limit``,
whose row count says whether it fitted: the database serialises the writers,
so any number of concurrent requests, in one gateway or several sharing the
DB, never together reserve more than the budget leaves. Settling releases the
reservation and adds the actual use in one transaction. A reservation left
behind by a killed gateway expires and is released by ``release_expired``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
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
class Reservation:
    id: str
    key_id: str
    unit: str
    period_start: str
    amount: float
    room: float  # what the budget had left for this request (the reservation included)


@dataclass(frozen=True)
class OverBudget(Exception):
    """The request would cross the key's budget in ``unit``."""

    unit: str
    limit: float
    period: str
    resets_at: datetime | None
    left: float


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
        """Hold ``amount`` of the key's ``unit`` budget; None when the key has no budget in that unit.

        Raises OverBudget when it does not fit in what is left.
        """
        budget = key.budget
        limit = budget.limits().get(unit) if budget else None
        if budget is None or limit is None:
            return None
        period_start, resets_at = period_bounds(budget.period, self.clock())
        self._ensure_row(key.id, unit, period_start)
        with Session(self.engine) as session, session.begin():
            fitted = session.execute(
                update(BudgetSpendRow)
                .where(BudgetSpendRow.key_id == key.id, BudgetSpendRow.unit == unit,
                       BudgetSpendRow.period_start == period_start,
                       BudgetSpendRow.spent + BudgetSpendRow.reserved + float(amount) <= limit)
                .values(reserved=BudgetSpendRow.reserved + float(amount))
            ).rowcount
            row = session.get(BudgetSpendRow, (key.id, unit, period_start))
            left = max(0.0, limit - row.spent - row.reserved) if row else limit
            if fitted:
                reservation = Reservation("rsv_" + secrets.token_hex(10), key.id, unit, period_start, float(amount),
                                          room=left + float(amount))
                session.add(ReservationRow(id=reservation.id, key_id=key.id, unit=unit, period_start=period_start,
                                           amount=float(amount),
                                           expires_at=self.clock() + timedelta(seconds=self.hold_s)))
                return reservation
        raise OverBudget(unit, limit, budget.period, resets_at, left)

    def settle(self, reservation: Reservation, used: float) -> None:
        """Release the reservation and count what the request used (in the reservation's period)."""
        with Session(self.engine) as session, session.begin():
            if session.execute(delete(ReservationRow).where(ReservationRow.id == reservation.id)).rowcount == 0:
                # Already released by the sweep (a request longer than hold_s): count the use only.
                held = 0.0
            else:
                held = reservation.amount
            session.execute(
                update(BudgetSpendRow)
                .where(BudgetSpendRow.key_id == reservation.key_id, BudgetSpendRow.unit == reservation.unit,
                       BudgetSpendRow.period_start == reservation.period_start)
                .values(reserved=BudgetSpendRow.reserved - held, spent=BudgetSpendRow.spent + used)
            )

    def release_expired(self) -> int:
        """Release the reservations of requests that can no longer be running (their gateway was killed)."""
        released = 0
        with Session(self.engine) as session, session.begin():
            stale = session.scalars(select(ReservationRow).where(ReservationRow.expires_at < self.clock())).all()
            for row in stale:
                session.execute(
                    update(BudgetSpendRow)
                    .where(BudgetSpendRow.key_id == row.key_id, BudgetSpendRow.unit == row.unit,
                           BudgetSpendRow.period_start == row.period_start)
                    .values(reserved=BudgetSpendRow.reserved - row.amount))
                session.delete(row)
                released += 1
        return released

    def spend(self, key: ApiKey) -> list[Spend]:
        """Each budgeted unit's limit, spend and reservations in the current period."""
        budget: Budget | None = key.budget
        if budget is None:
            return []
        period_start, resets_at = period_bounds(budget.period, self.clock())
        out = []
        with Session(self.engine) as session:
            for unit, limit in budget.limits().items():
                row = session.get(BudgetSpendRow, (key.id, unit, period_start))
                out.append(Spend(unit, limit, row.spent if row else 0.0, row.reserved if row else 0.0, resets_at))
        return out

    def _ensure_row(self, key_id: str, unit: str, period_start: str) -> None:
        """The period's counter row, made by whichever request comes first (a losing insert is harmless)."""
        with Session(self.engine) as session:
            if session.get(BudgetSpendRow, (key_id, unit, period_start)) is not None:
                return
            session.add(BudgetSpendRow(key_id=key_id, unit=unit, period_start=period_start, spent=0.0, reserved=0.0))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
