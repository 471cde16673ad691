"""Per-key request rate limits: a fixed one-minute window, kept in memory; a request may count against several
keys' windows at once (a key's and its parent's)."""

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
    key_id: str = ""  # whose window decided

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
        return self.hit_all([(key_id, limit)], now)

    def hit_all(self, limits: list[tuple[str, int]], now: float | None = None) -> Decision:
        """Count one request in every ``(key id, limit)`` window if each has room, else in none; the decision
        of the window with the least room (the one that refused, if any)."""
        now = now or time.time()
        window = int(now // WINDOW_S) * WINDOW_S
        counts = {}
        for key_id, _limit in limits:
            start, count = self._windows.get(key_id, (window, 0))
            counts[key_id] = 0 if start != window else count
        allowed = all(counts[key_id] < limit for key_id, limit in limits)
        decisions = []
        for key_id, limit in limits:
            count = counts[key_id] + 1 if allowed else counts[key_id]
            self._windows[key_id] = (window, count)
            decisions.append(Decision(counts[key_id] < limit, limit, max(0, limit - count), window + WINDOW_S, key_id))
        refused = [decision for decision in decisions if not decision.allowed]
        worst = refused[0] if refused else min(decisions, key=lambda decision: decision.remaining)
        return Decision(allowed, worst.limit, worst.remaining, worst.reset, worst.key_id)
