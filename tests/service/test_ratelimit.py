"""The per-tenant token bucket, on a stepped clock."""

from __future__ import annotations

from service.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_tenant_bursts_one_minutes_worth_then_waits_for_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one token per second
    assert [limiter.acquire("a") for _ in range(60)] == [0] * 60
    assert limiter.acquire("a") == 1
    clock.t += 0.5
    assert limiter.acquire("a") == 1  # half a token: ceil(0.5 s) = 1 s
    clock.t += 0.5
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 1
    assert limiter.acquire("b") == 0  # buckets are per tenant
    clock.t += 3600
    assert [limiter.acquire("a") for _ in range(60)] == [0] * 60  # capped at the capacity
    assert limiter.acquire("a") == 1


def test_retry_after_is_the_whole_seconds_to_the_next_token() -> None:
    clock = Clock()
    limiter = RateLimiter(2, clock=clock)  # one token per 30 s
    assert limiter.acquire("a") == 0 and limiter.acquire("a") == 0
    assert limiter.acquire("a") == 30
    clock.t += 20.5
    assert limiter.acquire("a") == 10  # ceil(9.5)


def test_zero_is_no_limit() -> None:
    limiter = RateLimiter(0)
    assert not limiter.enabled
    assert all(limiter.acquire("a") == 0 for _ in range(10_000))
