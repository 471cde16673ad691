"""Budgets at every scope at once (key, user, tenant), on real SQLite and real PostgreSQL.

A request reserves in each of its scopes in one transaction: all or nothing,
whichever scope is short. Fifty threads against a nearly spent tenant budget,
each through its own key and user, reserve exactly what it has left.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from appliance.accounting.budgets import Budgeted, Budgets, OverBudget
from appliance.db.database import open_database
from appliance.db.keys import Budget
from tests.support.postgres import postgres_server, why_unavailable


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if why_unavailable() is not None:
        pytest.skip(str(why_unavailable()))
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    if request.param == "sqlite":
        return open_database(f"sqlite:///{tmp_path_factory.mktemp('budgets') / 'state.db'}")
    return open_database(request.getfixturevalue("postgres_url"))


def unique(prefix: str) -> str:
    import secrets

    return f"{prefix}_{secrets.token_hex(8)}"


def test_a_request_reserves_in_every_scope_or_in_none(db: Engine) -> None:
    budgets = Budgets(db)
    key, user, tenant = unique("key"), unique("usr"), unique("ten")
    scopes = [Budgeted("key", key, Budget("day", tokens=1000)), Budgeted("user", user, Budget("day", cost=0.5)),
              Budgeted("tenant", tenant, Budget("month", tokens=100))]
    held = budgets.reserve_all(scopes, {"tokens": 60, "cost": 0.2})
    assert held is not None and {(p.scope_kind, p.unit) for p in held.parts} == {
        ("key", "tokens"), ("user", "cost"), ("tenant", "tokens")}
    with pytest.raises(OverBudget) as refused:
        budgets.reserve_all(scopes, {"tokens": 60, "cost": 0.2})  # the tenant has 40 tokens left
    assert (refused.value.scope_kind, refused.value.unit, refused.value.left) == ("tenant", "tokens", 40)
    # Nothing of the refused request stayed reserved in the scopes that had room.
    assert budgets.spend_of(key, scopes[0].budget)[0].reserved == 60
    assert budgets.spend_of(user, scopes[1].budget)[0].reserved == pytest.approx(0.2)
    budgets.settle(held, {"tokens": 25, "cost": 0.1})
    assert [(s.spent, s.reserved) for s in budgets.spend_of(tenant, scopes[2].budget)] == [(25, 0)]
    assert budgets.spend_of(user, scopes[1].budget)[0].spent == pytest.approx(0.1)
    with pytest.raises(OverBudget) as by_cost:
        budgets.reserve_all(scopes, {"tokens": 10, "cost": 0.45})
    assert (by_cost.value.scope_kind, by_cost.value.unit) == ("user", "cost")


def test_fifty_concurrent_requests_through_different_keys_never_overshoot_their_tenant(db: Engine) -> None:
    budgets = Budgets(db)
    tenant = Budgeted("tenant", unique("ten"), Budget("total", tokens=1000))
    budgets.settle(budgets.reserve_all([tenant], {"tokens": 930}), {"tokens": 930})  # nearly spent: 70 left
    granted: list[object] = []
    refused: list[OverBudget] = []
    start = threading.Barrier(50)

    def one(index: int) -> None:
        scopes = [Budgeted("key", unique("key"), Budget("day", tokens=500)),
                  Budgeted("user", f"usr_{index % 5:016x}", Budget("day", tokens=500)), tenant]
        start.wait()
        try:
            granted.append(budgets.reserve_all(scopes, {"tokens": 10}))
        except OverBudget as exc:
            refused.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert (len(granted), len(refused)) == (7, 43)
    assert {exc.scope_kind for exc in refused} == {"tenant"}
    [spend] = budgets.spend_of(tenant.id, tenant.budget)
    assert spend.spent + spend.reserved == 1000


def test_an_expired_reservation_is_released_in_every_scope(db: Engine) -> None:
    from datetime import UTC, datetime, timedelta

    class Clock:
        now = datetime(2026, 12, 1, 10, tzinfo=UTC)

        def __call__(self) -> datetime:
            return self.now

    clock = Clock()
    budgets = Budgets(db, clock=clock, hold_s=60)
    scopes = [Budgeted("user", unique("usr"), Budget("day", images=2)),
              Budgeted("tenant", unique("ten"), Budget("day", images=2))]
    budgets.reserve_all(scopes, {"images": 2})  # its gateway was killed: never settled
    clock.now += timedelta(seconds=61)
    assert budgets.release_expired() == 2
    assert budgets.reserve_all(scopes, {"images": 2}) is not None
