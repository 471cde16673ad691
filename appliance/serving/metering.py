"""Accounting at the edge of each inference call: reserve before, settle and record after.

A service calls ``reserve`` once it knows the model and the most the call can
use; it puts what the engine reports into ``meter_of(call).units``. The call
reserves in every scope it belongs to (its key, user and tenant) at once, in
the request's unit and, where a scope has a cost budget, in cost at the
model's prices. For a live request the gateway's outermost layer calls
``settle`` just before the answer's last byte leaves (so a client's next
request sees the settled budget) and ``finish`` when the request is over; the
batch runner calls ``finish`` when a line is answered. Either way: one usage
row per call, whatever its outcome, with its cost.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from appliance.accounting.budgets import Budgeted, OverBudget, Reservation
from appliance.accounting.periods import period_bounds
from appliance.accounting.service import Accounting
from appliance.accounting.units import Units, cost_bound, cost_of, price_per
from appliance.catalogue import ModelEntry, Price
from appliance.ids import new_id
from appliance.metrics import USAGE_UNITS
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode
from appliance.tenancy.caller import Caller

SCOPE_NAMES = {"key": "API key", "parent": "API key's parent", "user": "user", "tenant": "tenant"}


@dataclass
class Meter:
    units: Units = field(default_factory=Units)
    reservation: Reservation | None = None
    price: Price | None = None  # the model's, once the call knows its model
    settled: bool = False

    def room(self, unit: str) -> float | None:
        """The most of ``unit`` the reservation leaves room for in every scope, cost budgets included."""
        if self.reservation is None:
            return None
        rooms = [room for room in (self.reservation.room(unit),) if room is not None]
        cost_room = self.reservation.room("cost")
        if cost_room is not None and self.price is not None and price_per(unit, self.price) > 0:
            rooms.append(cost_room / price_per(unit, self.price))
        return min(rooms) if rooms else None


def budgeted_scopes(caller: Caller) -> list[Budgeted]:
    return [Budgeted(scope.kind, scope.id, scope.budget) for scope in caller.scopes() if scope.budget is not None]


def budgeted(call: Call, unit: str = "tokens") -> bool:
    """Whether any scope of the call has a budget in ``unit`` or in cost (only then is a bound worth working out)."""
    return any(unit in scope.budget.limits() or "cost" in scope.budget.limits()
               for scope in budgeted_scopes(call.caller))


def meter_of(call: Call) -> Meter:
    meter = call.fields.get("meter")
    if meter is None:
        meter = call.fields["meter"] = Meter()
    return meter


async def reserve(call: Call, unit: str, amount: float, entry: ModelEntry) -> Meter:
    """Hold ``amount`` of ``unit`` (and its cost) in every budgeted scope of the call; BUDGET_EXCEEDED naming the
    scope without room. Nothing is held when no scope has a budget in either."""
    meter = meter_of(call)
    meter.price = entry.price
    scopes = budgeted_scopes(call.caller)
    if not scopes:
        return meter
    amounts = {unit: amount, "cost": cost_bound(unit, amount, entry.price)}
    accounting: Accounting = call.runtime.accounting
    try:
        meter.reservation = await asyncio.to_thread(accounting.budgets.reserve_all, scopes, amounts)
    except OverBudget as exc:
        raise budget_exceeded(exc, amounts[exc.unit]) from None
    return meter


def over_room(meter: Meter, unit: str, needed: float) -> ApiError:
    """BUDGET_EXCEEDED for a request whose size showed only once the engine measured it (audio's length): names
    the scope whose room was the least."""
    reservation = meter.reservation
    assert reservation is not None
    price = meter.price
    tightest, least = None, float("inf")
    for part in reservation.parts:
        if part.unit == unit:
            room = part.room
        elif part.unit == "cost" and price is not None and price_per(unit, price) > 0:
            room = part.room / price_per(unit, price)
        else:
            continue
        if room < least:
            tightest, least = part, room
    assert tightest is not None
    _start, resets_at = period_bounds(tightest.period, datetime.now(UTC))
    wanted = needed if tightest.unit == unit else needed * price_per(unit, price)  # type: ignore[arg-type]
    return budget_exceeded(OverBudget(tightest.unit, tightest.limit, tightest.period, resets_at,
                                      max(0.0, tightest.room), tightest.scope_kind), wanted)


def budget_exceeded(exc: OverBudget, amount: float) -> ApiError:
    unit = exc.unit.replace("_", " ")
    period = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}[exc.period]
    if exc.resets_at is None:
        when, retry_after = "it does not renew (a total budget); ask for a larger one", None
    else:
        when = f"it renews at {exc.resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        retry_after = max(1, int((exc.resets_at - datetime.now(UTC)).total_seconds()))
    owner = SCOPE_NAMES.get(exc.scope_kind, exc.scope_kind)
    return ApiError(ErrorCode.BUDGET_EXCEEDED,
                    f"This {owner}'s {period} budget of {exc.limit:g} {unit} would be exceeded: "
                    f"{round(exc.left, 3):g} left, this request may use up to {amount:.10g}; {when}.",
                    retry_after=retry_after)


def _used(meter: Meter, status: int) -> dict[str, float]:
    """What to charge each unit of the reservation."""
    reservation = meter.reservation
    assert reservation is not None
    units = {part.unit for part in reservation.parts}
    if status >= 400:  # the client got an error, not an answer: nothing is charged
        return dict.fromkeys(units, 0.0)
    if not meter.units.known:  # a stream cut before the engine's count: its use is unknown, so it costs the hold
        return {unit: reservation.amount(unit) for unit in units}
    return {unit: cost_of(meter.units, meter.price) if unit == "cost" and meter.price else meter.units.amount(unit)
            for unit in units}


async def settle(runtime: Any, state: dict[str, Any], status: int) -> None:
    """Release the request's reservation and count its use (once; shielded from the client's disconnect)."""
    meter: Meter | None = state.get("meter")
    if meter is None or meter.settled:
        return
    meter.settled = True
    reservation = meter.reservation
    if reservation is None:
        return
    accounting: Accounting = runtime.accounting
    with anyio.CancelScope(shield=True):
        await asyncio.to_thread(accounting.budgets.settle, reservation, _used(meter, status))


async def finish(runtime: Any, state: dict[str, Any], route: str, status: int, started: float) -> None:
    """The call is over: settle its reservation (if not yet) and queue its usage row."""
    await settle(runtime, state, status)
    record(runtime, route, state, status, started)


def record(runtime: Any, route: str, state: dict[str, Any], status: int, started: float) -> None:
    """Queue the call's usage row (a known key) and count its units in the metrics."""
    caller: Caller | None = state.get("caller")
    accounting: Accounting | None = getattr(runtime, "accounting", None)
    if caller is None or accounting is None:
        return
    meter: Meter = state.get("meter") or Meter()
    units = meter.units
    model = state.get("model")
    cost = cost_of(units, meter.price) if meter.price is not None and status < 400 else 0.0
    row = {
        "id": new_id("usage_"), "created_at": datetime.now(UTC),
        "request_id": state.get("request_id", ""), "key_id": caller.key.id, "user_id": caller.user_id,
        "tenant_id": caller.tenant_id, "model": model,
        "backend_id": state.get("backend"), "route": route, "status_code": status,
        "error_code": state.get("error_code"), "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "tokens_in": units.tokens_in, "tokens_out": units.tokens_out, "images": units.images,
        "image_size": units.image_size, "audio_seconds_in": round(units.audio_seconds_in, 3),
        "audio_seconds_out": round(units.audio_seconds_out, 3), "characters": units.characters, "cost": cost,
        "queue_wait_ms": state.get("queue_wait_ms"),
    }
    accounting.recorder.record(row)
    for unit, value in (("tokens_in", units.tokens_in), ("tokens_out", units.tokens_out), ("images", units.images),
                        ("audio_seconds_in", units.audio_seconds_in), ("audio_seconds_out", units.audio_seconds_out),
                        ("characters", units.characters)):
        if value:
            USAGE_UNITS.labels(model or "", unit).inc(value)
