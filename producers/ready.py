"""``/readyz``'s check of SNS, cached: a public endpoint must not turn each call into SNS calls.

A successful probe (``GetTopicAttributes`` per declared topic) answers every call
for ``ttl_s`` seconds, so a ready process calls SNS at most once per topic per
``ttl_s``, however often it is probed. Concurrent calls wait for the probe in
flight instead of starting their own (on the event loop, not in the threadpool the
enqueue routes need), and a failed probe answers them all; it is not reused after
that, so readiness comes back with the first call after SNS (or the topic) does —
while SNS fails, probes go one at a time.
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
    """The answer of ``probe``: topic names reused for ``ttl_s``, a :class:`PublishError`
    shared by the calls that waited for it."""

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
        #: The failure of the latest probe, and how many probes ran (to tell a caller that
        #: waited for a failed probe from one that comes after it).
        self._failure: PublishError | None = None
        self._probes = 0

    async def check(self) -> list[str]:
        """The declared topics' names; raises :class:`PublishError` when not ready."""
        seen = self._probes
        async with self._lock:
            if self._topics is not None and self._clock() < self._expires_s:
                return list(self._topics)
            if self._probes != seen and self._failure is not None:
                raise self._failure  # the probe this call waited for failed
            self._probes += 1
            self._topics, self._failure = None, None
            try:
                topics = await run_in_threadpool(self._probe)
            except PublishError as exc:
                # Logged here, with the cause; the answer carries the detail only.
                log.warning("not ready", reason=exc.detail, error=repr(exc.__cause__ or exc))
                self._failure = exc
                raise
            self._topics, self._expires_s = topics, self._clock() + self._ttl_s
            return list(topics)
