"""Accounting at the edge of each inference call: reserve before, settle and record after.

A service calls ``reserve`` once it knows the model and the most the call can
use; it puts what the engine reports into ``meter_of(call).units``. For a live
request the gateway's outermost layer calls ``settle`` just before the answer's
last byte leaves (so a client's next request sees the settled budget) and
``finish`` when the request is over; the batch runner calls ``finish`` when a
line is answered. Either way: one usage row per call, whatever its outcome.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio

from appliance.accounting.budgets import OverBudget, Reservation
from appliance.accounting.periods import period_bounds
from appliance.accounting.service import Accounting
from appliance.accounting.units import Units
from appliance.db.keys import ApiKey
from appliance.ids import new_id
from appliance.metrics import USAGE_UNITS
from appliance.serving.context import Call
from appliance.serving.errors import ApiError, ErrorCode


@dataclass
class Meter:
    units: Units = field(default_factory=Units)
    reservation: Reservation | None = None
    settled: bool = False


def budgeted(key: ApiKey, unit: str = "tokens") -> bool:
    """Whether the key has a budget in ``unit`` (what to reserve is worth working out only then)."""
    return key.budget is not None and unit in key.budget.limits()


def meter_of(call: Call) -> Meter:
    meter = call.fields.get("meter")
    if meter is None:
        meter = call.fields["meter"] = Meter()
    return meter


async def reserve(call: Call, unit: str, amount: float) -> Meter:
    """Hold ``amount`` of the key's budget in ``unit`` (nothing when it has none); BUDGET_EXCEEDED if it won't fit."""
    meter = meter_of(call)
    key = call.key
    if not budgeted(key, unit):
        return meter
    accounting: Accounting = call.runtime.accounting
    try:
        meter.reservation = await asyncio.to_thread(accounting.budgets.reserve, key, unit, amount)
    except OverBudget as exc:
        raise budget_exceeded(exc, amount) from None
    return meter


def over_room(key: ApiKey, meter: Meter, needed: float) -> ApiError:
    """BUDGET_EXCEEDED for a request whose size showed only once the engine measured it (audio's length)."""
    reservation = meter.reservation
    assert reservation is not None and key.budget is not None
    _start, resets_at = period_bounds(key.budget.period, datetime.now(UTC))
    left = reservation.room  # what was left for this request
    limit = key.budget.limits()[reservation.unit]
    return budget_exceeded(OverBudget(reservation.unit, limit, key.budget.period, resets_at, max(0.0, left)), needed)


def budget_exceeded(exc: OverBudget, amount: float) -> ApiError:
    unit = exc.unit.replace("_", " ")
    period = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}[exc.period]
    if exc.resets_at is None:
        when, retry_after = "it does not renew (a total budget); ask for a larger one", None
    else:
        when = f"it renews at {exc.resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        retry_after = max(1, int((exc.resets_at - datetime.now(UTC)).total_seconds()))
    return ApiError(ErrorCode.BUDGET_EXCEEDED,
                    f"This API key's {period} budget of {exc.limit:g} {unit} would be exceeded: {round(exc.left, 3):g} left, "
                    f"this request may use up to {amount:.10g}; {when}.", retry_after=retry_after)


async def settle(runtime: Any, state: dict[str, Any], status: int) -> None:
    """Release the request's reservation and count its use (once; shielded from the client's disconnect)."""
    meter: Meter | None = state.get("meter")
    if meter is None or meter.settled:
        return
    meter.settled = True
    reservation = meter.reservation
    if reservation is None:
        return
    if status >= 400:  # the client got an error, not an answer: nothing is charged
        used = 0.0
    elif meter.units.known:
        used = meter.units.amount(reservation.unit)
    else:  # a stream cut before the engine's count: its use is unknown, so it costs what was reserved
        used = reservation.amount
    accounting: Accounting = runtime.accounting
    with anyio.CancelScope(shield=True):
        await asyncio.to_thread(accounting.budgets.settle, reservation, used)


async def finish(runtime: Any, state: dict[str, Any], route: str, status: int, started: float) -> None:
    """The call is over: settle its reservation (if not yet) and queue its usage row."""
    await settle(runtime, state, status)
    record(runtime, route, state, status, started)


def record(runtime: Any, route: str, state: dict[str, Any], status: int, started: float) -> None:
    """Queue the call's usage row (a known key) and count its units in the metrics."""
    key: ApiKey | None = state.get("api_key")
    accounting: Accounting | None = getattr(runtime, "accounting", None)
    if key is None or accounting is None:
        return
    meter: Meter = state.get("meter") or Meter()
    units = meter.units
    model = state.get("model")
    row = {
        "id": new_id("usage_"), "created_at": datetime.now(UTC),
        "request_id": state.get("request_id", ""), "key_id": key.id, "model": model,
        "backend_id": state.get("backend"), "route": route, "status_code": status,
        "error_code": state.get("error_code"), "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "tokens_in": units.tokens_in, "tokens_out": units.tokens_out, "images": units.images,
        "image_size": units.image_size, "audio_seconds_in": round(units.audio_seconds_in, 3),
        "audio_seconds_out": round(units.audio_seconds_out, 3), "characters": units.characters,
    }
    accounting.recorder.record(row)
    for unit, value in (("tokens_in", units.tokens_in), ("tokens_out", units.tokens_out), ("images", units.images),
                        ("audio_seconds_in", units.audio_seconds_in), ("audio_seconds_out", units.audio_seconds_out),
                        ("characters", units.characters)):
        if value:
            USAGE_UNITS.labels(model or "", unit).inc(value)
