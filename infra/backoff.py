"""Exponential backoff with a cap and jitter: the one schedule behind every retry wait.

:func:`exponential_delay_s` is the schedule; the Python client's waits, the
supervisor's restarts and the ledger's resends of unprocessed items use it with
their own base, cap and jitter. :func:`backoff_delay_s` applies a queue's declared
:class:`~infra.topology.Backoff` as an SQS visibility timeout (the workers' retries).
Standard library only, so that the Python client stays light.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Literal

from infra.limits import MAX_VISIBILITY_TIMEOUT_S

if TYPE_CHECKING:
    from infra.topology.model import Backoff

#: ``none`` keeps the delay, ``full`` draws uniformly from [0, delay], ``equal``
#: from [delay/2, delay] (half fixed, half random).
Jitter = Literal["none", "full", "equal"]

#: The exponent stops growing here: 2**1000 is a float overflow waiting to happen.
_MAX_DOUBLINGS = 64


def exponential_delay_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float | None = None,
    jitter: Jitter = "none",
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed ``attempt`` (1-based) before the next one.

    ``min(cap_s, base_s * 2**(attempt-1))`` (no cap when ``cap_s`` is None), then
    ``jitter``. ``rng`` draws the jitter: pass a seeded ``random.Random`` for a
    reproducible schedule; without it the ``random`` module's shared generator does.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    delay = base_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS)
    if cap_s is not None:
        delay = min(cap_s, delay)
    uniform = rng.uniform if rng is not None else random.uniform
    if jitter == "full":
        return uniform(0, delay)
    if jitter == "equal":
        return delay / 2 + uniform(0, delay / 2)
    return delay


def backoff_delay_s(attempt: int, backoff: Backoff, rng: random.Random | None = None) -> int:
    """Seconds a message waits after failed ``attempt`` (1-based), as a visibility timeout.

    :func:`exponential_delay_s` with the declared ``base_s``, ``max_s`` and ``jitter``.
    SQS visibility timeouts are whole seconds, so the result is rounded up (a 0.5 s
    base becomes 1 s rather than an immediate retry) and capped at SQS's 12 h.
    """
    delay = exponential_delay_s(
        attempt, base_s=backoff.base_s, cap_s=backoff.max_s, jitter=backoff.jitter, rng=rng
    )
    return min(math.ceil(delay), MAX_VISIBILITY_TIMEOUT_S)
