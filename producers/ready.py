"""``/readyz``'s check of SNS, cached: a public endpoint must not turn each call into SNS calls.

A probe (``GetTopicAttributes`` per declared topic) answers every call for
``ttl_s`` seconds, whether it succeeded or failed, so a process calls SNS at most
once per topic per ``ttl_s`` however often it is probed — during an SNS outage
too. Concurrent calls wait for the probe in flight instead of starting their own
(on the event loop, not in the threadpool the enqueue routes need). Readiness
therefore follows SNS with a delay of at most ``ttl_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
from starlette.concurrency import run_in_threadpool

from infra.logs import get_logger
from producers.publisher import PublishError

log = get_logger("conveyor.api")


class CachedReadiness:
    """The answer of ``probe``, topic names or a :class:`PublishError`, reused for ``ttl_s``."""

    def __init__(
        self,
        probe: Callable[[], list[str]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = anyio.Lock()
        self._topics: list[str] | None = None
        self._expires_s = 0.0
        self._failure: PublishError | None = None

    async def check(self) -> list[str]:
        """The declared topics' names; raises :class:`PublishError` when not ready."""
        async with self._lock:
            if self._clock() >= self._expires_s:
                self._topics, self._failure = None, None
                try:
                    self._topics = await run_in_threadpool(self._probe)
                except PublishError as exc:
                    # Logged here, with the cause; the answer carries the detail only.
                    log.warning("not ready", reason=exc.detail, error=repr(exc.__cause__ or exc))
                    self._failure = exc
                self._expires_s = self._clock() + self._ttl_s
            if self._failure is not None:
                raise self._failure
            assert self._topics is not None  # a probe either answered or failed
            return list(self._topics)
