"""Budgets on a real SQLite state DB: reservations that never overshoot, settlement, rollover on an injected clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.accounting.budgets import Budgets, OverBudget
from appliance.db.database import open_database
from appliance.db.keys import ApiKey, Budget, KeyStore


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    return open_database(f"sqlite:///{tmp_path / 'state.db'}")


def budgeted(db, budget: Budget) -> ApiKey:  # type: ignore[no-untyped-def]
    key, _secret = KeyStore(db).create("budgeted", budget=budget)
    return key


def test_reservations_fit_until_the_budget_is_spent_and_settle_to_actual_use(db) -> None:  # type: ignore[no-untyped-def]
    budgets = Budgets(db)
    key = budgeted(db, Budget("day", tokens=100))
    first = budgets.reserve(key, "tokens", 60)
    assert first is not None
    with pytest.raises(OverBudget) as refused:
        budgets.reserve(key, "tokens", 60)  # 60 held + 60 > 100
    assert (refused.value.unit, refused.value.limit, refused.value.left) == ("tokens", 100, 40)
    budgets.settle(first, 25)  # the request used less than it could have
    second = budgets.reserve(key, "tokens", 60)
    assert second is not None
    [spend] = budgets.spend(key)
    assert (spend.spent, spend.reserved) == (25, 60)


def test_a_unit_without_a_limit_is_not_reserved(db) -> None:  # type: ignore[no-untyped-def]
    key = budgeted(db, Budget("day", images=2))
    assert Budgets(db).reserve(key, "tokens", 10_000) is None


def test_fifty_concurrent_reservations_never_overshoot(db) -> None:  # type: ignore[no-untyped-def]
    budgets = Budgets(db)
    key = budgeted(db, Budget("total", tokens=1000))
    budgets.settle(budgets.reserve(key, "tokens", 930), 930)  # nearly spent: 70 left
    granted: list[object] = []
    refused: list[OverBudget] = []
    start = threading.Barrier(50)

    def one() -> None:
        start.wait()
        try:
            granted.append(budgets.reserve(key, "tokens", 10))
        except OverBudget as exc:
            refused.append(exc)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert (len(granted), len(refused)) == (7, 43)
    [spend] = budgets.spend(key)
    assert spend.spent + spend.reserved == 1000


def test_the_period_rolls_over_at_midnight_utc(db) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(datetime(2026, 12, 1, 23, 59, tzinfo=UTC))
    budgets = Budgets(db, clock=clock)
    key = budgeted(db, Budget("day", images=3))
    budgets.settle(budgets.reserve(key, "images", 3), 3)
    with pytest.raises(OverBudget) as refused:
        budgets.reserve(key, "images", 1)
    assert refused.value.resets_at == datetime(2026, 12, 2, tzinfo=UTC)
    clock.now += timedelta(minutes=1)  # the next day
    assert budgets.reserve(key, "images", 3) is not None


@pytest.mark.parametrize(("period", "now", "renews"), [
    ("week", datetime(2026, 12, 3, 12, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC)),  # Thursday → Monday
    ("month", datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ("total", datetime(2026, 12, 31, 23, tzinfo=UTC), None),
])
def test_week_month_and_total_periods(db, period: str, now: datetime, renews: datetime | None) -> None:  # type: ignore[no-untyped-def]
    budgets = Budgets(db, clock=Clock(now))
    key = budgeted(db, Budget(period, audio_seconds=5.0))
    budgets.settle(budgets.reserve(key, "audio_seconds", 5.0), 5.0)
    with pytest.raises(OverBudget) as refused:
        budgets.reserve(key, "audio_seconds", 0.5)
    assert refused.value.resets_at == renews


def test_a_killed_gateways_reservation_is_released_when_it_expires(db) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(datetime(2026, 12, 1, 10, tzinfo=UTC))
    budgets = Budgets(db, clock=clock, hold_s=600)
    key = budgeted(db, Budget("day", tokens=100))
    budgets.reserve(key, "tokens", 100)  # never settled: its gateway was killed
    assert budgets.release_expired() == 0
    clock.now += timedelta(seconds=601)
    assert budgets.release_expired() == 1
    assert budgets.reserve(key, "tokens", 100) is not None


@pytest.mark.parametrize(("budget", "message"), [
    (dict(period="day", tokens=0), "positive"),
    (dict(period="day", images=-1), "positive"),
    (dict(period="year", tokens=5), "unknown budget period"),
    (dict(period="day"), "at least one unit"),
])
def test_a_budget_that_makes_no_sense_is_refused(budget: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        Budget(**budget)
