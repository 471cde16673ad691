"""Request rate limits per key, per user and per tenant, each on its own: a fixed one-minute window, in memory.

A request counts against every scope it belongs to, and only if each of them
still has room (a request refused by its tenant's limit uses none of its
key's). The windows live in each gateway's memory: gateways sharing a DB each
allow the limit. A key's parent keys are scopes of its requests too (tenancy/caller.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

WINDOW_S = 60


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # unix time at which the window restarts

    @property
    def headers(self) -> dict[str, str]:
        return {
            "X-Scaigrid-Ratelimit-Limit": str(self.limit),
            "X-Scaigrid-Ratelimit-Remaining": str(self.remaining),
            "X-Scaigrid-Ratelimit-Reset": str(self.reset),
        }

    def retry_after(self, now: float | None = None) -> int:
        return max(1, math.ceil(self.reset - (now or time.time())))


class RateLimiter:
    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, int]] = {}  # key id → (window start, requests in it)

    def hit(self, key_id: str, limit: int, now: float | None = None) -> Decision:
        now = now or time.time()
        window = int(now // WINDOW_S) * WINDOW_S
        start, count = self._windows.get(key_id, (window, 0))
        if start != window:
            count = 0
        allowed = count < limit
        if allowed:
            count += 1
        self._windows[key_id] = (window, count)
        return Decision(allowed, limit, max(0, limit - count), window + WINDOW_S)

    def hit_all(self, limits: list[tuple[str, int]], now: float | None = None) -> tuple[Decision, int]:
        """Count one request against every ``(scope id, limit)`` if each has room; the decision of the tightest
        scope (the first full one, when refused) and its index in ``limits``."""
        now = now or time.time()
        window = int(now // WINDOW_S) * WINDOW_S
        counts = []
        for scope_id, limit in limits:
            start, count = self._windows.get(scope_id, (window, 0))
            counts.append(0 if start != window else count)
        full = [index for index, (count, (_id, limit)) in enumerate(zip(counts, limits)) if count >= limit]
        if full:
            index = full[0]
            limit = limits[index][1]
            return Decision(False, limit, 0, window + WINDOW_S), index
        for (scope_id, _limit), count in zip(limits, counts):
            self._windows[scope_id] = (window, count + 1)
        remaining = [limit - count - 1 for count, (_id, limit) in zip(counts, limits)]
        index = remaining.index(min(remaining))
        return Decision(True, limits[index][1], remaining[index], window + WINDOW_S), index
