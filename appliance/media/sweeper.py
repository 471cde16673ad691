"""The background task that removes expired media, at start and then every few minutes (or sooner for short TTLs)."""

from __future__ import annotations

import asyncio
import logging

from appliance.media.store import MediaStore

log = logging.getLogger("appliance.media")

MAX_INTERVAL_S = 60.0


def sweep_interval(ttl_s: float) -> float:
    """Often enough that an expired file lingers at most a quarter of its lifetime, at most a minute."""
    return max(1.0, min(MAX_INTERVAL_S, ttl_s / 4))


async def run_sweeper(store: MediaStore) -> None:
    """Sweep forever; a failed sweep is logged and retried at the next tick, never fatal."""
    interval = sweep_interval(store.ttl_s)
    while True:
        try:
            removed = await asyncio.to_thread(store.sweep)
            if removed:
                log.info("removed %d expired media file(s)", removed)
        except Exception:
            log.exception("media sweep failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)
