"""Moving dead-lettered jobs back to a queue: exactly the selected ones, never losing one.

Each message is sent to the target *before* it is deleted from the DLQ, so a
crash between the two leaves the job in both queues (a duplicate that shares the
job id, which handlers already tolerate) and never in neither. The message goes
back as a new message, so SQS counts its receives from zero and the job gets a
fresh attempt budget.

What changes on the way: a valid envelope records the redrive in two CloudEvents
extension attributes (:data:`~ops.dlq.jobs.REDRIVE_COUNT`,
:data:`~ops.dlq.jobs.REDRIVEN_AT`); any other body goes back byte for byte;
the ``conveyor.failure`` attribute is dropped (the job has not failed yet on its
new journey).

A move is two passes. :func:`ops.dlq.peek.peek` selects the jobs and releases
them (so a user can look at the list and confirm); :func:`redrive` then receives
again and moves only the messages the selection named — not a job that died
again meanwhile, nor one that arrived after the user confirmed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws.errors import describe_aws_error
from infra.envelope import EnvelopeError, decode
from infra.errors import AwsError
from infra.failure import FAILURE_ATTRIBUTE, REDRIVE_COUNT, REDRIVEN_AT
from infra.limits import SQS_MAX_BATCH_BYTES
from infra.topology import Topology
from ops.dlq.jobs import DeadJob
from ops.dlq.peek import BATCH_MAX, DEFAULT_HOLD_S, Scan
from ops.dlq.queues import DlqError, TargetQueue

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def without_handler(topology: Topology, queue: str, jobs: list[DeadJob]) -> list[str]:
    """The job types among ``jobs`` that ``queue`` has no handler for (sorted; ``?`` for
    an unknown type): redriven there, they would be dead-lettered again."""
    runnable = {t for t in topology.job_types_of_queue(queue) if topology.handler_for(queue, t)}
    return sorted({job.job_type or "?" for job in jobs} - runnable)


#: Scans of the DLQ a redrive makes at most to find every selected message.
SCAN_PASSES = 2
#: How long a rate-limited pause may last before the held messages' hold is renewed.
PAUSE_SLICE_S = 1.0


def stamp_redrive(body: str, now: datetime) -> str:
    """``body`` with the redrive recorded, if it is a valid envelope; else ``body`` unchanged.

    Only the two extension attributes change; every other member of the document
    is kept as it was (including extensions this code does not know).
    """
    try:
        envelope = decode(body)
        doc = json.loads(body)
    except EnvelopeError:
        return body
    except Exception:  # noqa: BLE001 - too deep to decode, or worse: not ours to change
        return body
    previous = (envelope.model_extra or {}).get(REDRIVE_COUNT, 0)
    if not isinstance(previous, int) or isinstance(previous, bool) or previous < 0:
        previous = 0
    doc[REDRIVE_COUNT] = previous + 1
    doc[REDRIVEN_AT] = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    stamped = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    if not sendable(stamped):
        # A "\\udcff" escape in the body decodes to a lone surrogate, which UTF-8
        # cannot carry: keep it escaped (the same JSON value).
        stamped = json.dumps(doc, separators=(",", ":"))
    return stamped


def sendable(body: str) -> bool:
    """Whether ``body`` can be sent to SQS at all (it must encode as UTF-8)."""
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resend_attributes(message_attributes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The message attributes to send back: all but the failure record.

    ReceiveMessage returns list fields SendMessage rejects; only what defines a
    value is kept.
    """
    kept: dict[str, Any] = {}
    for name, value in message_attributes.items():
        if name == FAILURE_ATTRIBUTE:
            continue
        fields = {k: value[k] for k in ("DataType", "StringValue", "BinaryValue") if value.get(k)}
        if "DataType" in fields and len(fields) == 2:
            kept[name] = fields
    return kept


def send_entry(job: DeadJob, target: TargetQueue, now: datetime, entry_id: str) -> dict[str, Any]:
    """The SendMessageBatch entry that puts ``job`` back on ``target``."""
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": stamp_redrive(job.body, now)}
    attributes = resend_attributes(job.message_attributes)
    if attributes:
        entry["MessageAttributes"] = attributes
    if target.fifo:
        entry["MessageGroupId"] = (
            job.attributes.get("MessageGroupId") or job.job_id or job.message_id
        )
        # The DLQ message id: if a crashed move is run again within SQS's five-minute
        # deduplication window, the second send of the same message is dropped.
        entry["MessageDeduplicationId"] = job.message_id
    return entry


def _entry_bytes(entry: dict[str, Any]) -> int:
    def size_of(text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))

    size = size_of(entry["MessageBody"])
    for name, value in entry.get("MessageAttributes", {}).items():
        size += size_of(name) + size_of(value["DataType"])
        size += size_of(str(value.get("StringValue") or value.get("BinaryValue") or ""))
    return size


def chunk_entries(entries: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """``entries`` in batches of at most ``size`` entries and :data:`SQS_MAX_BATCH_BYTES`."""
    chunk: list[dict[str, Any]] = []
    chunk_bytes = 0
    for entry in entries:
        entry_bytes = _entry_bytes(entry)
        if chunk and (len(chunk) >= size or chunk_bytes + entry_bytes > SQS_MAX_BATCH_BYTES):
            yield chunk
            chunk, chunk_bytes = [], 0
        chunk.append(entry)
        chunk_bytes += entry_bytes
    if chunk:
        yield chunk


class Pacer:
    """Keeps a long run at ``rate_per_s`` messages per second on average (None: no limit)."""

    def __init__(
        self,
        rate_per_s: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate_per_s = rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._started: float | None = None
        self._sent = 0

    @property
    def batch_size(self) -> int:
        """Messages per batch: up to 10, but about one second's worth at a low rate."""
        if self.rate_per_s is None:
            return BATCH_MAX
        return max(1, min(BATCH_MAX, int(self.rate_per_s)))

    def wait(self, count: int, while_waiting: Callable[[], None] = lambda: None) -> None:
        """Block until ``count`` more messages may go, calling ``while_waiting`` each second."""
        now = self._clock()
        if self._started is None:
            self._started = now
        if self.rate_per_s is not None:
            due = self._started + self._sent / self.rate_per_s
            while (remaining := due - self._clock()) > 0:
                self._sleep(min(remaining, PAUSE_SLICE_S))
                while_waiting()
        self._sent += count


@dataclass
class RedriveResult:
    """What a move did."""

    selected: int
    moved: int = 0
    #: Could not be sent: still in the DLQ, untouched.
    failed: int = 0
    #: Sent, but the delete from the DLQ failed: now in both queues (same job id).
    duplicated: int = 0
    #: Selected but not received again (moved or deleted by someone else, or held by
    #: another reader, or behind a held message group of a FIFO queue).
    missing: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: Why the run stopped early (a whole SQS call failed), if it did.
    aborted: str | None = None
    #: Ctrl-C stopped the run; what was moved is exact, the rest stays in the DLQ.
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """Every selected job was moved, exactly once."""
        return self.moved == self.selected and not (self.failed or self.duplicated)

    @property
    def not_moved(self) -> int:
        """Selected jobs still (only) in the DLQ."""
        return self.selected - self.moved - self.duplicated

    @property
    def rate_per_s(self) -> float:
        """Moves per second over the whole run."""
        return self.moved / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def _error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)


ProgressCallback = Callable[[RedriveResult], None]


def _send(
    sqs: SQSClient, target_url: str, chunk: list[dict[str, Any]], result: RedriveResult
) -> list[str]:
    """Send one batch; the entry ids SQS accepted."""
    try:
        response = sqs.send_message_batch(QueueUrl=target_url, Entries=chunk)  # type: ignore[arg-type]
    except (ClientError, BotoCoreError) as exc:
        # The whole call failed (target gone, no permission, endpoint down): nothing
        # was sent, so nothing will be deleted; stop rather than fail every batch.
        result.failed += len(chunk)
        raise DlqError(
            f"sending to {target_url.rsplit('/', 1)[-1]}: {describe_aws_error(exc)}"
        ) from exc
    for failure in response.get("Failed", []):
        result.failed += 1
        result._error(f"{failure.get('Code')}: {failure.get('Message')}")
    return [s["Id"] for s in response.get("Successful", [])]


def _delete(
    sqs: SQSClient, scan: Scan, dlq_url: str, message_ids: list[str], result: RedriveResult
) -> list[str]:
    """Delete sent messages from the DLQ; the ids deleted."""
    entries = [{"Id": str(i), "ReceiptHandle": scan.receipt(m)} for i, m in enumerate(message_ids)]
    try:
        response = sqs.delete_message_batch(QueueUrl=dlq_url, Entries=entries)  # type: ignore[arg-type]
    except (ClientError, BotoCoreError) as exc:
        result.duplicated += len(message_ids)
        raise DlqError(
            f"deleting moved messages from the DLQ: {describe_aws_error(exc)}"
            f" ({len(message_ids)} jobs are now in both queues)"
        ) from exc
    for failure in response.get("Failed", []):
        result.duplicated += 1
        result._error(f"delete: {failure.get('Code')}: {failure.get('Message')}")
    return [message_ids[int(s["Id"])] for s in response.get("Successful", [])]


def redrive(
    sqs: SQSClient,
    dlq_url: str,
    target: TargetQueue,
    target_url: str,
    selected: list[DeadJob],
    *,
    rate_per_s: float | None = None,
    hold_s: float = DEFAULT_HOLD_S,
    on_progress: ProgressCallback = lambda result: None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    pacer: Pacer | None = None,
) -> RedriveResult:
    """Move the ``selected`` jobs (found by a previous peek) from the DLQ to ``target``.

    Never raises for SQS's errors or Ctrl-C: the run stops, the messages not yet
    moved stay in the DLQ (released at once), and the result says why
    (``aborted``, ``interrupted``). A batch interrupted between its send and its
    delete is counted as ``duplicated``: it may be in both queues.
    """
    wanted = {job.message_id for job in selected}
    result = RedriveResult(selected=len(wanted))
    pacer = pacer or Pacer(rate_per_s)
    started = time.monotonic()
    done: set[str] = set()
    sent: list[str] = []  # sent, not yet deleted: in both queues if the run stops here
    try:
        # A second pass for what the first did not find: a selected message may be hidden
        # from one pass, behind a FIFO group another held message of the pass locks, or
        # held for a moment by another reader. The first pass released everything it held.
        for _ in range(SCAN_PASSES):
            if done >= wanted:
                break
            with Scan(sqs, dlq_url, hold_s=hold_s) as scan:
                for page in scan.pages():
                    mine = [job for job in page if job.message_id in wanted]
                    for job in [j for j in mine if not sendable(j.body)]:
                        # Not UTF-8 (only a foreign client could have put it there): SQS
                        # cannot take it back; it stays in the DLQ, untouched.
                        mine.remove(job)
                        done.add(job.message_id)
                        result.failed += 1
                        result._error(f"message {job.message_id}: the body is not valid UTF-8")
                    entries = [send_entry(job, target, now(), str(i)) for i, job in enumerate(mine)]
                    for chunk in chunk_entries(entries, pacer.batch_size):
                        pacer.wait(len(chunk), scan.heartbeat)
                        sent = [
                            mine[int(i)].message_id for i in _send(sqs, target_url, chunk, result)
                        ]
                        deleted = _delete(sqs, scan, dlq_url, sent, result) if sent else []
                        sent = []
                        scan.forget(deleted)
                        result.moved += len(deleted)
                        done.update(mine[int(e["Id"])].message_id for e in chunk)
                        result.elapsed_s = time.monotonic() - started
                        on_progress(result)
                    if done >= wanted:
                        break  # everything selected was handled: no need to read on
                result.errors += [p for p in scan.problems if p not in result.errors]
        result.missing = len(wanted - done)
    except DlqError as exc:
        result.aborted = exc.message
    except AwsError as exc:  # a receive failed
        result.aborted = str(exc)
    except KeyboardInterrupt:
        result.interrupted = True
        result.duplicated += len(sent)  # perhaps: the delete may have happened
    result.elapsed_s = time.monotonic() - started
    return result
