"""The accounting of one gateway: usage store, writer, budgets, and the sweep of stale reservations."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine

from appliance.accounting.budgets import Budgets, Clock, utc_now
from appliance.accounting.recorder import UsageRecorder
from appliance.accounting.store import UsageStore

log = logging.getLogger("appliance.accounting")

SWEEP_INTERVAL_S = 60.0


class Accounting:
    def __init__(self, engine: Engine, clock: Clock = utc_now, reservation_hold_s: float = 3600.0) -> None:
        self.usage = UsageStore(engine)
        self.recorder = UsageRecorder(self.usage)
        self.budgets = Budgets(engine, clock, hold_s=reservation_hold_s)
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.recorder.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.to_thread(self.recorder.close)

    async def _sweep(self) -> None:
        while True:
            try:
                released = await asyncio.to_thread(self.budgets.release_expired)
                if released:
                    log.warning("released %d budget reservations left by a stopped gateway", released)
            except Exception:
                log.exception("could not sweep expired budget reservations")
            await asyncio.sleep(SWEEP_INTERVAL_S)
