"""Reading a DLQ without consuming it: receive, hold briefly, release.

SQS has no "peek": a message can only be read by receiving it, which hides it for
a visibility timeout. A :class:`Scan` receives every message once (at most 10 per
call, deduplicated by MessageId because SQS may return a message twice), keeps
what it has seen hidden so the next receive returns new messages, extends that
hold while it works, and makes every message it still holds visible again
(``ChangeMessageVisibilityBatch`` to 0) as soon as it ends — on success, on an
error and on Ctrl-C alike. If the process dies instead, the messages reappear
when the hold expires.

On a FIFO queue a receive returns nothing more of a message group while some of
it is held, so a scan sees up to 10 messages of each group: :func:`peek` then
reports that it saw fewer messages than the queue holds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws.errors import aws_errors, describe_aws_error
from infra.aws.lookup import queue_depth
from ops.dlq.filters import JobFilter
from ops.dlq.jobs import DeadJob

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: SQS hands out at most 10 messages per receive, and batches hold at most 10 entries.
BATCH_MAX = 10
#: Default hold: long enough to cover the work done on one page, short enough that a
#: killed command hides nothing for long. It is extended while the command runs.
DEFAULT_HOLD_S = 30.0
#: The shortest long poll: unlike a short poll (which samples a subset of SQS's
#: servers), it answers with nothing only when nothing can be received.
RECEIVE_WAIT_S = 1
#: A receive that returns only messages already seen is retried this many times
#: before the scan concludes there is nothing new.
DUPLICATE_ONLY_RETRIES = 2
#: Upper bound on receives per scan (100,000 messages), so a queue that fills
#: faster than it is read cannot keep a command running forever.
MAX_RECEIVES = 10_000


def hold_seconds(hold_s: float) -> int:
    """A hold as SQS's whole-second VisibilityTimeout (at least 1 s, at most 12 h)."""
    return min(max(1, math.ceil(hold_s)), 12 * 3600)


def batches(items: list[Any], size: int = BATCH_MAX) -> Iterator[list[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class _Held:
    receipt: str
    hidden_until: float


class Scan:
    """One pass over a queue's messages, each received once and held until released.

    Use it as a context manager; iterate :meth:`pages`; call :meth:`forget` for
    messages deleted meanwhile and :meth:`heartbeat` during long pauses.
    """

    def __init__(
        self,
        sqs: SQSClient,
        url: str,
        *,
        hold_s: float = DEFAULT_HOLD_S,
        wait_s: int = RECEIVE_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        max_receives: int = MAX_RECEIVES,
    ) -> None:
        self.sqs = sqs
        #: ReceiveMessage calls this scan may make at most (a page load's bound).
        self.max_receives = max_receives
        #: ReceiveMessage calls made so far.
        self.receives = 0
        #: The scan stopped at ``max_receives`` rather than at the end of the queue.
        self.truncated = False
        self.url = url
        self.hold_s = hold_seconds(hold_s)
        self.wait_s = wait_s
        self._clock = clock
        self._held: dict[str, _Held] = {}
        self._seen: set[str] = set()
        #: Problems met while releasing or extending (the messages reappear on their own).
        self.problems: list[str] = []

    @property
    def seen(self) -> int:
        """How many distinct messages the scan received."""
        return len(self._seen)

    def __enter__(self) -> Scan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _receive(self) -> list[dict[str, Any]]:
        self.receives += 1
        with aws_errors(f"receiving from {self.url.rsplit('/', 1)[-1]}"):
            response = self.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=BATCH_MAX,
                VisibilityTimeout=self.hold_s,
                WaitTimeSeconds=self.wait_s,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        return [dict(m) for m in response.get("Messages", [])]

    def pages(self) -> Iterator[list[DeadJob]]:
        """Pages of messages not seen before, until a receive brings nothing new."""
        duplicate_only = 0
        for _ in range(self.max_receives):
            received = self._receive()
            if not received:
                return
            hidden_until = self._clock() + self.hold_s
            new: list[DeadJob] = []
            for message in received:
                message_id = str(message["MessageId"])
                # The newest receipt handle is the one SQS honours.
                self._held[message_id] = _Held(str(message["ReceiptHandle"]), hidden_until)
                if message_id not in self._seen:
                    self._seen.add(message_id)
                    new.append(DeadJob.from_message(message))
            if not new:
                duplicate_only += 1
                if duplicate_only > DUPLICATE_ONLY_RETRIES:
                    return
                continue
            duplicate_only = 0
            yield new
            self.heartbeat()
        self.truncated = True

    def receipt(self, message_id: str) -> str:
        """The current receipt handle of a held message."""
        return self._held[message_id].receipt

    def forget(self, message_ids: Iterable[str]) -> None:
        """Stop holding messages that no longer exist (deleted)."""
        for message_id in message_ids:
            self._held.pop(message_id, None)

    def _change_visibility(self, message_ids: list[str], timeout_s: int) -> list[str]:
        """Set the visibility of held messages; returns the ids SQS accepted."""
        accepted: list[str] = []
        for chunk in batches(message_ids):
            entries = [
                {
                    "Id": str(i),
                    "ReceiptHandle": self._held[m].receipt,
                    "VisibilityTimeout": timeout_s,
                }
                for i, m in enumerate(chunk)
            ]
            try:
                response = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=entries,  # type: ignore[arg-type]
                )
            except (ClientError, BotoCoreError) as exc:
                self.problems.append(describe_aws_error(exc))
                continue
            accepted += [chunk[int(e["Id"])] for e in response.get("Successful", [])]
            # Failed entries are messages deleted by someone else, or receipts that
            # expired: either way SQS has already made them visible or gone.
        return accepted

    def heartbeat(self) -> None:
        """Extend the hold of messages whose hold is more than half over."""
        now = self._clock()
        due = [m for m, h in self._held.items() if h.hidden_until - now < self.hold_s / 2]
        for message_id in self._change_visibility(due, self.hold_s):
            self._held[message_id].hidden_until = now + self.hold_s

    def release(self) -> None:
        """Make every message still held visible again at once."""
        held = list(self._held)
        if held:
            self._change_visibility(held, 0)
        self._held.clear()


@dataclass
class Peek:
    """What a non-destructive scan found."""

    jobs: list[DeadJob] = field(default_factory=list)
    #: Distinct messages received (matching or not).
    scanned: int = 0
    #: The queue's approximate depth when the scan began.
    depth: int = 0
    #: The scan stopped at the limit rather than at the end of the queue.
    limited: bool = False
    #: ReceiveMessage calls the scan made.
    receives: int = 0
    #: The scan stopped at ``max_receives``: what it found is a sample of the queue.
    sampled: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        """The scan ended before seeing every message the queue held (in flight, FIFO groups)."""
        return not self.limited and not self.sampled and self.scanned < self.depth


def peek(
    sqs: SQSClient,
    url: str,
    job_filter: JobFilter | None = None,
    *,
    limit: int | None = None,
    hold_s: float = DEFAULT_HOLD_S,
    max_receives: int = MAX_RECEIVES,
) -> Peek:
    """The jobs of the queue at ``url`` that ``job_filter`` selects (the first ``limit``).

    Nothing is deleted; every message is visible again when this returns.
    ``max_receives`` bounds the ReceiveMessage calls (so the messages read, at most 10
    each): a page that must answer quickly samples a deep queue instead of scanning it,
    and ``sampled`` then says the scan did not reach the end.
    """
    found = Peek(depth=queue_depth(sqs, url).total)
    if found.depth == 0:
        return found  # nothing to wait a long poll for
    with Scan(sqs, url, hold_s=hold_s, max_receives=max_receives) as scan:
        for page in scan.pages():
            for job in page:
                if job_filter is None or job_filter.matches(job):
                    found.jobs.append(job)
                    if limit is not None and len(found.jobs) >= limit:
                        found.limited = True
                        break
            if found.limited:
                break
    found.scanned = scan.seen
    found.receives = scan.receives
    found.sampled = scan.truncated
    found.problems = scan.problems
    found.jobs.sort(key=_age_key)
    return found


def _age_key(job: DeadJob) -> float:
    sent = job.sent_at
    return sent.timestamp() if sent is not None else math.inf
