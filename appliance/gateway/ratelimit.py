"""Per-key request rate limits: a fixed one-minute window, kept in memory."""

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
