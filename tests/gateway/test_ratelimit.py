"""Per-key rate limits: a fixed one-minute window."""

from __future__ import annotations

from appliance.gateway.ratelimit import RateLimiter


def test_the_limit_allows_n_requests_a_window_then_refuses_until_it_resets() -> None:
    limiter = RateLimiter()
    start = 1_000_040.0  # 20 s into the window that starts at 1_000_020
    decisions = [limiter.hit("key_a", 2, now=start + i) for i in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert [d.remaining for d in decisions] == [1, 0, 0]
    assert decisions[2].reset == 1_000_080
    assert decisions[2].retry_after(now=start + 2) == 38
    assert decisions[2].headers == {"X-Scaigrid-Ratelimit-Limit": "2", "X-Scaigrid-Ratelimit-Remaining": "0",
                                    "X-Scaigrid-Ratelimit-Reset": "1000080"}
    assert limiter.hit("key_a", 2, now=start + 41).allowed  # the next window
    assert limiter.hit("key_b", 2, now=start + 2).allowed  # keys are counted apart
