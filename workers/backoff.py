"""The retry schedule: exponential, capped, with jitter — applied as a visibility timeout."""

from __future__ import annotations

import math
import random

from infra.topology.model import MAX_VISIBILITY_TIMEOUT_S, Backoff


def backoff_delay_s(attempt: int, backoff: Backoff, rng: random.Random | None = None) -> int:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    ``min(max_s, base_s * 2**(attempt-1))``, then jitter: ``none`` keeps it, ``full``
    draws uniformly from [0, delay], ``equal`` from [delay/2, delay]. SQS visibility
    timeouts are whole seconds, so the result is rounded up (a 0.5 s base becomes
    1 s rather than an immediate retry) and capped at SQS's 12 h.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
    # Cap the exponent first: 2**1000 is a float overflow waiting to happen.
    exponential = backoff.base_s * 2.0 ** min(attempt - 1, 64)
    delay = min(backoff.max_s, exponential)
    if backoff.jitter == "full":
        delay = rng.uniform(0, delay)
    elif backoff.jitter == "equal":
        delay = delay / 2 + rng.uniform(0, delay / 2)
    return min(math.ceil(delay), MAX_VISIBILITY_TIMEOUT_S)
