"""Per-tenant request rate limit of the API: a token bucket per tenant, in process memory.

Each tenant has a bucket of ``rate`` tokens (``PLCERT_RATE_LIMIT`` requests per minute) that
refills continuously at ``rate / 60`` tokens per second; a request takes one token, and a
request that finds less than one is answered 429 ``rate-limited`` with ``Retry-After``: the
whole seconds until a token is back. A tenant may therefore burst one minute's worth of
requests at once and then sustain ``rate`` per minute.

The buckets live in the API process: with several API processes (uvicorn ``--workers``, several
hosts behind a load balancer, Redis configured or not) each enforces the limit on its own share
of the traffic, so a tenant can reach ``rate`` times the number of processes. A shared limit
would need a Redis-side bucket; this one deliberately needs nothing.

Only the ``/v1`` routes are limited (``service.deps.rate_limit``); ``/healthz``, ``/readyz``,
``/metrics``, ``/docs`` and ``/openapi.json`` are exempt so that probes and scrapers never see a
429. Unauthenticated requests are answered 401 before any token is taken.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_TENANTS = 100_000
"""Buckets kept before full ones (idle tenants) are forgotten: bounds the memory."""


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per tenant; :meth:`acquire` returns 0 (allowed) or the seconds to wait.

    ``per_minute`` <= 0 disables the limit. ``clock`` (monotonic seconds) is injectable so that
    tests step time instead of sleeping.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = int(per_minute)
        self.capacity = float(max(self.per_minute, 0))
        self.refill_per_s = self.capacity / 60.0
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when the limit is off (``PLCERT_RATE_LIMIT=0``)."""
        return self.per_minute > 0

    def acquire(self, tenant: str) -> int:
        """Take one token of ``tenant``: 0 if the request may proceed, else the whole seconds
        (>= 1) until a token is available (the ``Retry-After`` value)."""
        if not self.enabled:
            return 0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(tenant)
            if bucket is None:
                if len(self._buckets) >= MAX_TENANTS:
                    self._forget_full(now)
                bucket = self._buckets[tenant] = _Bucket(self.capacity, now)
            bucket.tokens = min(
                self.capacity, bucket.tokens + (now - bucket.at) * self.refill_per_s
            )
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0
            return max(1, math.ceil((1.0 - bucket.tokens) / self.refill_per_s))

    def _forget_full(self, now: float) -> None:
        full_after = self.capacity / self.refill_per_s
        self._buckets = {t: b for t, b in self._buckets.items() if now - b.at < full_after}
