"""A per-API-key rate limit: a token bucket counted in jobs.

Each key's bucket holds up to ``burst`` tokens and refills at ``rate_per_s``. A
request costs one token per job; it is admitted while the bucket is not empty
and may take it below zero (a 500-job batch is not refused forever by a burst of
100: it is admitted, and the key then waits until the debt is repaid). A refused
request is answered 429 with ``Retry-After``: the seconds until one token is back.

Buckets live in the API process: with N API processes a key gets N times the rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token buckets by key name (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, cost: int, *, rate_per_s: float, burst: float) -> int | None:
        """Spend ``cost`` tokens of ``key``'s bucket: None if admitted, else Retry-After (s)."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated_s) * rate_per_s)
            bucket.updated_s = now
            if bucket.tokens < 1:
                return max(1, math.ceil((1 - bucket.tokens) / rate_per_s))
            bucket.tokens -= cost
            return None
