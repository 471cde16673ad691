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


def test_a_request_counts_against_every_scope_only_if_each_has_room() -> None:
    limiter = RateLimiter()
    start = 1_800_000_000.0  # the start of a minute
    scopes = [("key_a", 5), ("usr_a", 5), ("ten_a", 2)]
    decisions = [limiter.hit_all(scopes, now=start + i) for i in range(3)]
    assert [d.allowed for d, _index in decisions] == [True, True, False]
    assert decisions[2][1] == 2 and decisions[0][0].remaining == 1  # refused by the tenant; the tightest shown
    third, _index = limiter.hit_all([("key_a", 3)], now=start + 4)
    assert third.allowed and third.remaining == 0  # the refused request used none of the key's room
