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


def test_a_request_counts_in_every_window_it_belongs_to_or_in_none() -> None:
    limiter = RateLimiter()
    now = 2_000_010.0
    assert limiter.hit_all([("child", 5), ("parent", 2)], now=now).allowed
    assert limiter.hit("parent", 2, now=now).allowed  # the parent's own request: its window is now full
    refused = limiter.hit_all([("child", 5), ("parent", 2)], now=now)
    assert not refused.allowed and refused.key_id == "parent" and refused.limit == 2
    assert limiter.hit_all([("child", 5)], now=now).remaining == 3  # the refused request was not counted anywhere


def test_the_decision_reports_the_window_with_the_least_room() -> None:
    decision = RateLimiter().hit_all([("child", 10), ("parent", 3)], now=3_000_000.0)
    assert (decision.allowed, decision.key_id, decision.remaining) == (True, "parent", 2)
