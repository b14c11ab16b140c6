"""The job ledger: each job's status, per queue, in the table ``<project>-<environment>-jobs``.

Only job types with ``ledger: true`` are recorded. The table has a partition key
only (``pk``) and two kinds of item:

- ``job#<job id>``: written by the producer once SNS accepted the job
  (:meth:`Ledger.record_queued`, BatchWriteItem, 25 per call): type, trace id, the
  queues it fans out to, ``queued_at``, and the name (never the secret) of the API
  key that enqueued it (``key_name``: who may read its status). A delayed job's is
  first written once its timer is stored (``record_queued`` with ``scheduled``: the
  same fields, ``state`` ``scheduled`` and ``due_at``), then replaced by the
  scheduler's ``record_queued`` when the job is published (``due_at`` kept).
- ``run#<queue>#<job id>``: written by the workers of that queue with a
  conditional UpdateItem: state (``running``, ``retrying``, ``succeeded``,
  ``dead-lettered``), attempt, timestamps, next attempt time, dead-letter reason;
  or by a cancellation (:meth:`Ledger.cancel`): ``cancelled``, finished, written
  only while the job has not started on that queue (no item yet, or ``retrying``).

Why two kinds and not one item with a per-queue map: BatchWriteItem can only
put whole items, unconditionally. A worker can start a job before the producer's
write lands; a put of the ``queued`` record would then erase the worker's state.
Separate items make the producer's write and the workers' writes independent.
``job#`` and ``run#`` cannot collide (queue names contain no ``#``).

Ordering: every run item holds ``redrives`` (from the envelope's redrive count),
``seq`` (``4 * attempt + phase``; phases running 1, retrying 2, finished 3) and
``finished``. A write is applied only if it is for a later redrive, or for the same
redrive, the item is not finished yet and its ``seq`` is higher. So a late or
duplicate write never moves a job backwards, a finished state stays finished
(a duplicate delivery after a success does not turn it back into ``running``), and
a redrive, which gives the job a fresh attempt budget, starts a new history.
``cancelled`` is final for good: no worker write, not even a redrive's, replaces it.

Cancellation costs the workers no extra request: a worker's ``running`` write
(:meth:`Ledger.record_start`, made before the handler) asks DynamoDB for the old
item when its condition fails (``ReturnValuesOnConditionCheckFailure``), so a
delivery of a cancelled job learns it from the write it makes anyway.

Ledger failures never fail anything: writes log and return; only
:meth:`Ledger.get` raises (:class:`LedgerUnavailableError`), so the API can
answer 503. Every write refreshes ``expires_at`` (DynamoDB time to live):
``ledger.retention_s`` after the job's last update.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field, PrivateAttr, ValidationError

from infra import aws
from infra.aws.errors import (
    describe_aws_error,
    error_code,
    is_condition_failed,
    is_table_missing,
)
from infra.aws.items import string_value as _s
from infra.aws.items import whole_number_value as _n
from infra.aws.names import TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE, ledger_table_name
from infra.backoff import exponential_delay_s
from infra.errors import AwsError
from infra.topology import Topology

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

log = structlog.stdlib.get_logger("conveyor.ledger")

JobState = Literal[
    "scheduled", "queued", "running", "retrying", "succeeded", "dead-lettered", "cancelled"
]
#: What a worker records; ``queued`` is the producer's, ``scheduled`` a delayed job's,
#: ``cancelled`` a cancellation's.
RunState = Literal["running", "retrying", "succeeded", "dead-lettered"]
_PHASE: dict[str, int] = {"running": 1, "retrying": 2, "succeeded": 3, "dead-lettered": 3}
FINISHED: frozenset[str] = frozenset({"succeeded", "dead-lettered", "cancelled"})
#: What :meth:`Ledger.record_start` found: ``recorded`` — the job is running, go on;
#: ``cancelled`` — the job was cancelled on this queue, do not run it; ``ignored`` — an
#: older or duplicate write (the job runs, as it always did); ``failed`` — DynamoDB
#: failed (logged; the job runs: a ledger outage never holds jobs back).
StartVerdict = Literal["recorded", "cancelled", "ignored", "failed"]
#: States in which a job has not started on a queue, so it can still be cancelled there.
CANCELLABLE: frozenset[str] = frozenset({"queued", "retrying"})

#: DynamoDB's limits: 25 writes per BatchWriteItem, 100 keys per BatchGetItem.
BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
#: BatchWriteItem calls of one record_queued in flight at once.
QUEUED_WRITERS = 4
#: Unprocessed items (throttling) are sent again this many times, after a short pause
#: that doubles each time.
UNPROCESSED_RETRIES = 3
UNPROCESSED_PAUSE_S = 0.05
#: Longer job ids are not envelopes' (which are at most 128 characters): never recorded.
MAX_JOB_ID_LEN = 128
#: Errors are cut to this length in the record (the DLQ holds the full failure).
MAX_ERROR_LEN = 500
#: The ledger fails fast: the producer records jobs on the request's path, and a
#: status nobody can read should cost an API request seconds, not a minute.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 3.0


class LedgerUnavailableError(AwsError):
    """The ledger could not be read (DynamoDB unreachable, refusing, or the table missing)."""


@dataclass(frozen=True)
class QueuedJob:
    """A job SNS accepted, as the producer records it."""

    job_id: str
    job_type: str
    #: The declared queues the job fans out to.
    queues: Sequence[str]
    trace_id: str | None = None
    #: The name of the API key that enqueued the job (None: no authentication).
    key_name: str | None = None
    #: A delayed job: when it is due.
    due_at: datetime | None = None
    #: Not published yet: its timer is stored (recorded as ``scheduled``).
    scheduled: bool = False
    #: When the API accepted the job (its envelope's ``time``), set before it was
    #: published: the record is written after SNS answered, when a fast worker may have
    #: finished it already, so "now" at that point would put queued after finished.
    queued_at: datetime | None = None


@dataclass(frozen=True)
class RunUpdate:
    """What a worker records about one delivery of a job on one queue."""

    queue: str
    job_id: str
    job_type: str
    state: RunState
    attempt: int
    #: How often the job was redriven from the DLQ (its envelope's redrive count).
    redrives: int = 0
    trace_id: str | None = None
    #: retrying: when the next attempt is due.
    next_attempt_at: datetime | None = None
    #: dead-lettered: the reason code (``attempts_exhausted``, ``permanent_error`` …).
    reason: str | None = None
    #: retrying / dead-lettered: the error, ``Type: message``.
    error: str | None = None
    at: datetime | None = None
    #: When this attempt started, for an update that replaced its attempt's
    #: ``running`` update before that was written (:func:`latest_of`).
    started_at: datetime | None = None

    @property
    def seq(self) -> int:
        """The order of this update within one redrive: ``4 * attempt + phase``."""
        return 4 * self.attempt + _PHASE[self.state]


def latest_of(older: RunUpdate, newer: RunUpdate) -> RunUpdate:
    """The one write that records both updates of a job on a queue, neither written yet.

    The later one (by redrive, then ``seq``) wins, as the table's condition would
    decide; an attempt's start time survives when its ``running`` update is dropped.
    """
    first, last = sorted((older, newer), key=lambda u: (u.redrives, u.seq))
    if (
        first.state == "running"
        and last.state != "running"
        and (first.redrives, first.attempt) == (last.redrives, last.attempt)
        and last.started_at is None
    ):
        return replace(last, started_at=first.at)
    return last


class QueueStatus(BaseModel):
    """The job on one of the queues it fans out to."""

    state: JobState = Field(
        description="scheduled (a delayed job, not published yet), queued, running,"
        " retrying, succeeded, dead-lettered or cancelled."
    )
    attempt: int = Field(0, description="The attempt number (0: not started yet).")
    redrives: int = Field(0, description="How often the job was redriven from the DLQ.")
    updated_at: datetime | None = Field(None, description="When this state was recorded.")
    started_at: datetime | None = Field(None, description="When the current attempt started.")
    next_attempt_at: datetime | None = Field(
        None, description="retrying: when the next attempt is due."
    )
    finished_at: datetime | None = Field(
        None, description="succeeded / dead-lettered: when it finished."
    )
    reason: str | None = Field(
        None, description="dead-lettered: why (attempts_exhausted, permanent_error, …)."
    )
    error: str | None = Field(None, description="The last error, 'Type: message'.")


class JobRecord(BaseModel):
    """A job's status as the ledger knows it."""

    id: str = Field(description="The job id.")
    type: str = Field(description="The job type.")
    state: JobState = Field(
        description="Overall: the state every queue is in, else the least advanced one"
        " (scheduled < queued < running < retrying < finished); once every queue"
        " finished: dead-lettered if one dead-lettered, else cancelled if one was"
        " cancelled."
    )
    due_at: datetime | None = Field(
        None, description="A delayed job: when it is (or was) due to be published."
    )
    trace_id: str | None = Field(None, description="The W3C trace id of the request.")
    queued_at: datetime | None = Field(
        None, description="When the producer recorded the job (absent if that write failed)."
    )
    queues: dict[str, QueueStatus] = Field(description="Per declared queue.")
    # Not part of the answer: who may see it.
    _key_name: str | None = PrivateAttr(default=None)

    @property
    def key_name(self) -> str | None:
        """The name of the API key that enqueued the job (None: not recorded)."""
        return self._key_name


def overall_state(states: Sequence[str]) -> JobState:
    """The job's state from its queues' states (see :attr:`JobRecord.state`)."""
    if not states:
        return "queued"
    for candidate in ("scheduled", "queued", "running", "retrying", "dead-lettered", "cancelled"):
        if candidate in states:
            return candidate
    return "succeeded"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def job_key(job_id: str) -> str:
    """The partition key of the producer's record."""
    return f"job#{job_id}"


def run_key(queue: str, job_id: str) -> str:
    """The partition key of the workers' record of ``job_id`` on ``queue``."""
    return f"run#{queue}#{job_id}"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _attr(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    if not isinstance(value, dict) or not value:
        return None
    kind, raw = next(iter(value.items()))
    if kind == "N":
        return int(float(raw))
    if kind == "L":
        return [_attr({"v": v}, "v") for v in raw]
    if kind == "BOOL":
        return bool(raw)
    return raw


class Ledger:
    """Reads and writes job status in the table ``table_name``.

    The client is asked of :func:`infra.aws.client` at each call, so a forked
    worker process uses its own connections.
    """

    def __init__(
        self,
        table_name: str,
        *,
        job_types: Sequence[str],
        queues: Sequence[str],
        retention_s: float,
    ) -> None:
        self.table_name = table_name
        #: The job types recorded (``ledger: true``).
        self.job_types = frozenset(job_types)
        #: Every declared queue: where :meth:`get` looks for run records.
        self.queues = tuple(queues)
        self.retention_s = retention_s

    @staticmethod
    def _ddb() -> DynamoDBClient:
        return aws.client(
            "dynamodb", connect_timeout_s=CONNECT_TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S
        )

    def records(self, job_type: str | None) -> bool:
        """Whether jobs of ``job_type`` are recorded."""
        return job_type in self.job_types

    def _expires_at(self) -> AttributeValueTypeDef:
        return _n(time.time() + self.retention_s)

    # -- the producer ---------------------------------------------------------------

    def record_queued(self, jobs: Sequence[QueuedJob]) -> None:
        """Record accepted jobs as queued (BatchWriteItem, 25 per call); never raises.

        Jobs whose type does not record status are skipped. A ``scheduled`` job is
        recorded as such (a delayed job whose timer is stored).
        """
        now = _iso(datetime.now(UTC))
        requests: dict[str, WriteRequestTypeDef] = {}
        for job in jobs:
            if not self.records(job.job_type) or len(job.job_id) > MAX_JOB_ID_LEN:
                continue
            item: dict[str, AttributeValueTypeDef] = {
                TABLE_PARTITION_KEY: _s(job_key(job.job_id)),
                "job_id": _s(job.job_id),
                "job_type": _s(job.job_type),
                "queues": {"L": [_s(q) for q in job.queues]},
                "queued_at": _s(_iso(job.queued_at) if job.queued_at is not None else now),
                TABLE_TTL_ATTRIBUTE: self._expires_at(),
            }
            if job.trace_id:
                item["trace_id"] = _s(job.trace_id)
            if job.key_name:
                item["key_name"] = _s(job.key_name)
            if job.due_at is not None:
                item["due_at"] = _s(_iso(job.due_at))
            if job.scheduled:
                item["state"] = _s("scheduled")
            # One batch may not name a key twice (ValidationException): the last wins.
            requests[job.job_id] = {"PutRequest": {"Item": item}}
        chunks = [list(c) for c in _chunks(list(requests.values()), BATCH_WRITE_MAX)]
        if len(chunks) <= 1:
            for chunk in chunks:
                self._batch_write(chunk)
            return
        # A 500-job batch is 20 calls: in parallel, so the API answers sooner.
        with ThreadPoolExecutor(max_workers=QUEUED_WRITERS, thread_name_prefix="ledger") as pool:
            list(pool.map(self._batch_write, chunks))

    def _batch_write(self, requests: list[WriteRequestTypeDef]) -> None:
        pending = requests
        try:
            for attempt in range(UNPROCESSED_RETRIES + 1):
                answer = self._ddb().batch_write_item(RequestItems={self.table_name: pending})
                # The output's type differs from the input's only in the stubs.
                pending = list(answer.get("UnprocessedItems", {}).get(self.table_name, []))  # type: ignore[arg-type]
                if not pending:
                    return
                if attempt < UNPROCESSED_RETRIES:
                    time.sleep(exponential_delay_s(attempt + 1, base_s=UNPROCESSED_PAUSE_S))
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "ledger.record_failed",
                table=self.table_name,
                state="queued",
                jobs=len(pending),
                error=describe_aws_error(exc),
                consequence="the jobs run; their status shows no queued time",
            )
            return
        log.warning(
            "ledger.record_failed",
            table=self.table_name,
            state="queued",
            jobs=len(pending),
            error="unprocessed items (throttled)",
            consequence="the jobs run; their status shows no queued time",
        )

    # -- the workers ----------------------------------------------------------------

    def _run_fields(self, update: RunUpdate) -> tuple[dict[str, AttributeValueTypeDef], list[str]]:
        """The attributes ``update`` sets, and those it removes (stale for its state)."""
        now = _iso(update.at or datetime.now(UTC))
        fields: dict[str, AttributeValueTypeDef] = {
            "job_id": _s(update.job_id),
            "job_type": _s(update.job_type),
            "queue": _s(update.queue),
            "state": _s(update.state),
            "attempt": _n(update.attempt),
            "redrives": _n(update.redrives),
            "seq": _n(update.seq),
            "finished": {"BOOL": update.state in FINISHED},
            "updated_at": _s(now),
            TABLE_TTL_ATTRIBUTE: self._expires_at(),
        }
        remove: list[str] = []
        if update.trace_id:
            fields["trace_id"] = _s(update.trace_id)
        if update.state == "running":
            fields["started_at"] = _s(now)
            remove += ["next_attempt_at", "finished_at", "reason", "error"]
        elif update.state == "retrying":
            if update.next_attempt_at is not None:
                fields["next_attempt_at"] = _s(_iso(update.next_attempt_at))
            remove += ["finished_at", "reason"]
        else:
            fields["finished_at"] = _s(now)
            remove.append("next_attempt_at")
            if update.state == "succeeded":
                remove += ["reason", "error"]
            elif update.reason:
                fields["reason"] = _s(update.reason)
        if update.state != "running" and update.started_at is not None:
            fields["started_at"] = _s(_iso(update.started_at))
        if update.state in ("retrying", "dead-lettered"):
            if update.error:
                fields["error"] = _s(update.error[:MAX_ERROR_LEN])
            else:
                remove.append("error")
        return fields, remove

    def record_run(self, update: RunUpdate) -> bool:
        """Record a worker's update; never raises.

        Returns whether it was written: False when it was older than what is
        recorded (ignored on purpose), when the job was cancelled on this queue, or
        when DynamoDB failed (logged).
        """
        return self._write_run(update, want_old=False) == "recorded"

    def record_start(self, update: RunUpdate) -> StartVerdict:
        """Record ``running`` before the handler runs, and say whether the job was cancelled.

        One conditional UpdateItem, as :meth:`record_run`; when its condition fails,
        DynamoDB hands back the item it kept (``ReturnValuesOnConditionCheckFailure``),
        so a cancelled job is told apart from a stale write without a read. Never raises.
        """
        return self._write_run(update, want_old=True)

    def _write_run(self, update: RunUpdate, *, want_old: bool) -> StartVerdict:
        if not self.records(update.job_type) or len(update.job_id) > MAX_JOB_ID_LEN:
            return "ignored"
        fields, remove = self._run_fields(update)
        names = {f"#{name}": name for name in [*fields, *remove, TABLE_PARTITION_KEY]}
        values = {f":{name}": value for name, value in fields.items()}
        values[":no"] = {"BOOL": False}
        values[":cancelled"] = _s("cancelled")
        expression = "SET " + ", ".join(f"#{name} = :{name}" for name in fields)
        if remove:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in remove)
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key={TABLE_PARTITION_KEY: _s(run_key(update.queue, update.job_id))},
                UpdateExpression=expression,
                # A cancelled item is final for every write, a redrive's included.
                ConditionExpression=(
                    f"attribute_not_exists(#{TABLE_PARTITION_KEY})"
                    " OR (#state <> :cancelled AND (#redrives < :redrives"
                    " OR (#redrives = :redrives AND #finished = :no AND #seq < :seq)))"
                ),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD" if want_old else "NONE",
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                old = exc.response.get("Item")
                if isinstance(old, dict) and _attr(old, "state") == "cancelled":
                    return "cancelled"
                log.debug(
                    "ledger.stale_update_ignored",
                    job_id=update.job_id,
                    queue=update.queue,
                    state=update.state,
                    attempt=update.attempt,
                )
                return "ignored"
            self._run_failed(update, exc)
            return "failed"
        except BotoCoreError as exc:
            self._run_failed(update, exc)
            return "failed"
        return "recorded"

    # -- cancelling -----------------------------------------------------------------

    def cancel(
        self, job_id: str, job_type: str, queues: Sequence[str], *, by: str | None = None
    ) -> dict[str, tuple[str, bool]]:
        """Mark ``job_id`` cancelled on each of ``queues`` where it has not started.

        Per queue one conditional UpdateItem: written only when the job has no run
        item there yet (queued, or not even delivered) or is ``retrying`` (waiting
        for its next attempt). Returns per queue ``(state, now)``: ``("cancelled",
        True)`` cancelled by this call; otherwise the state that stopped it
        (``cancelled`` by an earlier call, ``running``, ``succeeded`` …) and False.
        Raises :class:`LedgerUnavailableError` when DynamoDB fails (the queues done
        so far stay cancelled: a retry of the whole call is safe).
        """
        now = _iso(datetime.now(UTC))
        values: dict[str, AttributeValueTypeDef] = {
            ":cancelled": _s("cancelled"),
            ":retrying": _s("retrying"),
            ":yes": {"BOOL": True},
            ":zero": _n(0),
            ":seq": _n(_PHASE["succeeded"]),
            ":now": _s(now),
            ":job_id": _s(job_id),
            ":job_type": _s(job_type),
            ":expires_at": self._expires_at(),
        }
        by_clause = ""
        if by is not None:
            values[":by"] = _s(by)
            by_clause = ", #cancelled_by = :by"
        answer: dict[str, tuple[str, bool]] = {}
        for queue in queues:
            values[":queue"] = _s(queue)
            try:
                self._ddb().update_item(
                    TableName=self.table_name,
                    Key={TABLE_PARTITION_KEY: _s(run_key(queue, job_id))},
                    UpdateExpression=(
                        "SET #state = :cancelled, #finished = :yes, #updated_at = :now,"
                        " #finished_at = :now, #job_id = :job_id, #job_type = :job_type,"
                        " #queue = :queue, #expires_at = :expires_at,"
                        " #attempt = if_not_exists(#attempt, :zero),"
                        " #redrives = if_not_exists(#redrives, :zero),"
                        " #seq = if_not_exists(#seq, :seq)" + by_clause + " REMOVE #next_attempt_at"
                    ),
                    ConditionExpression=(
                        f"attribute_not_exists(#{TABLE_PARTITION_KEY}) OR #state = :retrying"
                    ),
                    ExpressionAttributeNames={
                        f"#{name}": name
                        for name in (
                            TABLE_PARTITION_KEY,
                            "state",
                            "finished",
                            "updated_at",
                            "finished_at",
                            "job_id",
                            "job_type",
                            "queue",
                            TABLE_TTL_ATTRIBUTE,
                            "attempt",
                            "redrives",
                            "seq",
                            "next_attempt_at",
                            *(["cancelled_by"] if by is not None else []),
                        )
                    },
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if is_condition_failed(exc):
                    old = exc.response.get("Item")
                    state = _attr(old, "state") if isinstance(old, dict) else None
                    answer[queue] = (str(state or "unknown"), False)
                    continue
                raise self._cancel_failed(job_id, queue, exc) from exc
            except BotoCoreError as exc:
                raise self._cancel_failed(job_id, queue, exc) from exc
            answer[queue] = ("cancelled", True)
        return answer

    def record_unpublished(self, job: QueuedJob) -> None:
        """Record a job that was never published (a delayed job cancelled before its time).

        Written only if the job has no producer's record yet (a conditional put), so
        its type, queues and owner are known to :meth:`get` — the owner may then see and
        cancel it again. Never raises (logged).
        """
        if not self.records(job.job_type) or len(job.job_id) > MAX_JOB_ID_LEN:
            return
        item: dict[str, AttributeValueTypeDef] = {
            TABLE_PARTITION_KEY: _s(job_key(job.job_id)),
            "job_id": _s(job.job_id),
            "job_type": _s(job.job_type),
            "queues": {"L": [_s(q) for q in job.queues]},
            TABLE_TTL_ATTRIBUTE: self._expires_at(),
        }
        if job.key_name:
            item["key_name"] = _s(job.key_name)
        try:
            self._ddb().put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=f"attribute_not_exists({TABLE_PARTITION_KEY})",
            )
        except ClientError as exc:
            if not is_condition_failed(exc):
                log.warning(
                    "ledger.record_failed",
                    table=self.table_name,
                    job_id=job.job_id,
                    state="cancelled",
                    error=describe_aws_error(exc),
                )
        except BotoCoreError as exc:
            log.warning(
                "ledger.record_failed",
                table=self.table_name,
                job_id=job.job_id,
                state="cancelled",
                error=describe_aws_error(exc),
            )

    def _cancel_failed(
        self, job_id: str, queue: str, exc: BotoCoreError | ClientError
    ) -> LedgerUnavailableError:
        log.warning(
            "ledger.cancel_failed",
            table=self.table_name,
            job_id=job_id,
            queue=queue,
            error=describe_aws_error(exc),
        )
        if isinstance(exc, ClientError) and is_table_missing(exc):
            return LedgerUnavailableError(
                f"the job ledger's table {self.table_name} does not exist:"
                " run `conveyor infra apply`"
            )
        return LedgerUnavailableError("the job ledger could not be written")

    def _run_failed(self, update: RunUpdate, exc: BotoCoreError | ClientError) -> None:
        log.warning(
            "ledger.record_failed",
            table=self.table_name,
            job_id=update.job_id,
            queue=update.queue,
            state=update.state,
            error=describe_aws_error(exc),
            consequence="the job goes on; its status lags",
        )

    # -- reading --------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if nothing is recorded (unknown id, or not a recorded type).

        Raises :class:`LedgerUnavailableError` when DynamoDB cannot answer.
        """
        if not job_id or len(job_id) > MAX_JOB_ID_LEN:
            return None
        keys = [job_key(job_id), *(run_key(q, job_id) for q in self.queues)]
        items: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(keys, BATCH_GET_MAX):
            for item in self._batch_get(list(chunk)):
                items[str(_attr(item, TABLE_PARTITION_KEY))] = item
        if not items:
            return None
        try:
            return self._record(job_id, items)
        except ValidationError as exc:
            # Not written by this code (or by a future version): say so, never a 500.
            raise LedgerUnavailableError(
                f"the job ledger holds an unreadable record for job '{job_id}'"
            ) from exc

    def _record(self, job_id: str, items: dict[str, dict[str, Any]]) -> JobRecord:
        """The record of ``job_id`` from its items (the producer's, the workers')."""
        queued = items.get(job_key(job_id))
        runs = {q: items[run_key(q, job_id)] for q in self.queues if run_key(q, job_id) in items}
        declared: list[str] = list(_attr(queued, "queues") or []) if queued else []
        waiting = "scheduled" if queued and _attr(queued, "state") == "scheduled" else "queued"
        statuses: dict[str, QueueStatus] = {q: QueueStatus(state=waiting) for q in declared}
        for queue, item in runs.items():
            statuses[queue] = QueueStatus(
                state=_attr(item, "state"),
                attempt=_attr(item, "attempt") or 0,
                redrives=_attr(item, "redrives") or 0,
                updated_at=_attr(item, "updated_at"),
                started_at=_attr(item, "started_at"),
                next_attempt_at=_attr(item, "next_attempt_at"),
                finished_at=_attr(item, "finished_at"),
                reason=_attr(item, "reason"),
                error=_attr(item, "error"),
            )
        any_item = queued if queued is not None else next(iter(runs.values()))
        record = JobRecord(
            id=job_id,
            type=_attr(any_item, "job_type") or "",
            state=overall_state([s.state for s in statuses.values()]),
            trace_id=_attr(any_item, "trace_id"),
            queued_at=_attr(queued, "queued_at") if queued else None,
            due_at=_attr(queued, "due_at") if queued else None,
            queues=dict(sorted(statuses.items())),
        )
        key_name = _attr(queued, "key_name") if queued else None
        record._key_name = key_name if isinstance(key_name, str) else None
        return record

    def _batch_get(self, keys: list[str]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            self.table_name: {
                "Keys": [{TABLE_PARTITION_KEY: _s(k)} for k in keys],
                "ConsistentRead": True,
            }
        }
        found: list[dict[str, Any]] = []
        try:
            for attempt in range(UNPROCESSED_RETRIES + 1):
                answer = self._ddb().batch_get_item(RequestItems=request)
                found += answer.get("Responses", {}).get(self.table_name, [])
                request = dict(answer.get("UnprocessedKeys") or {})
                if not request:
                    return found
                if attempt < UNPROCESSED_RETRIES:
                    time.sleep(exponential_delay_s(attempt + 1, base_s=UNPROCESSED_PAUSE_S))
        except ClientError as exc:
            if is_table_missing(exc):
                raise LedgerUnavailableError(
                    f"the job ledger's table {self.table_name} does not exist:"
                    " run `conveyor infra apply`"
                ) from exc
            raise LedgerUnavailableError(
                f"the job ledger could not be read ({error_code(exc) or 'error'})"
            ) from exc
        except BotoCoreError as exc:
            raise LedgerUnavailableError(
                f"the job ledger is unreachable ({type(exc).__name__})"
            ) from exc
        raise LedgerUnavailableError("the job ledger is throttling reads")


def ledger_for(topology: Topology) -> Ledger | None:
    """The ledger of ``topology``, or None when no job type records its status."""
    job_types = topology.ledger_job_types()
    if not job_types:
        return None
    return Ledger(
        ledger_table_name(topology),
        job_types=job_types,
        queues=sorted(topology.queues),
        retention_s=topology.ledger.retention_s,
    )
