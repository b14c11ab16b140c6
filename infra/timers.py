"""The timer store: delayed jobs waiting for their due time, in ``<project>-<environment>-timers``.

The contract between the delayed-jobs work (this module, the API's delayed path and
``conveyor scheduler``), the cancellation work (which calls :meth:`TimerStore.get`
and :meth:`TimerStore.cancel`) and the cron work (which keeps its schedule state and
tick claims in the same table under ``pk`` values starting with ``schedule#``).

The table: partition key ``pk`` (S), sort key ``sk`` (S), time to live on
``expires_at`` (see :mod:`infra.aws.names`), and one global secondary index,
:data:`DUE_INDEX`, partitioned by due time. Reserved ``pk`` prefixes:

- ``schedule#<name>``: cron schedule state and tick claims (owned by the cron code);
- ``timer#<job id>`` (sk ``timer``): one delayed job — its encoded envelope, due
  time, FIFO ids, the API key's name; while a scheduler holds it, ``lease_owner``
  and ``lease_until``;
- ``meta#timers`` (sk ``watermark``): the oldest due-time bucket that may still hold
  a timer (so a scheduler that was down finds every job it missed, and a running
  one does not query empty buckets forever).

**Buckets.** A timer is in the index partition ``<bucket>#<shard>``: ``bucket`` is
its due time rounded down to :data:`BUCKET_S` seconds, ``shard`` one of
:data:`SHARDS` by the hash of its job id; the index's sort key is
``<due time in ms, 15 digits>#<job id>``. A scheduler queries every shard of every
bucket from the watermark up to now for ``sort key <= now``: only due jobs come
back, oldest first, and replicas start at different shards, so they share the work.
The index projects keys only: a query returns ids, and the claim returns the item.

**Claims.** A due job is claimed with one conditional UpdateItem (no lease, or an
expired one) that sets ``lease_owner`` and ``lease_until`` and returns the item;
the claimer publishes it and then deletes it (BatchWriteItem, 25 per call). A
replica killed between claim and delete leaves the item with a lease: once the
lease expires, another replica claims and publishes it again, with the same job id
(the idempotency guard collapses the duplicate). Requests per job are constant —
one put (batched), one claim, one delete (batched) — whatever the delay.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from infra import aws
from infra.aws.errors import describe_aws_error, error_code, is_condition_failed, is_table_missing
from infra.aws.items import string_value as _s
from infra.aws.items import whole_number_value as _n
from infra.aws.names import TABLE_PARTITION_KEY, TABLE_SORT_KEY, TABLE_TTL_ATTRIBUTE
from infra.backoff import exponential_delay_s
from infra.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, WriteRequestTypeDef

log = structlog.stdlib.get_logger("conveyor.timers")

#: The ``pk`` prefix reserved for cron schedules (state and tick claims).
SCHEDULE_PK_PREFIX = "schedule#"
#: The ``pk`` prefix of a delayed job's item; its ``sk`` is :data:`TIMER_SK`.
TIMER_PK_PREFIX = "timer#"
TIMER_SK = "timer"
#: The watermark's item.
META_PK = "meta#timers"
WATERMARK_SK = "watermark"

#: The global secondary index of due timers, and its key attributes (both strings).
DUE_INDEX = "due"
DUE_BUCKET_ATTRIBUTE = "due_bucket"
DUE_SORT_ATTRIBUTE = "due_sort"
#: Width of a due-time bucket. Wide enough that a running scheduler queries few
#: buckets per turn (the current one, and the previous one until the watermark moves).
BUCKET_S = 300
#: Index partitions per bucket: replicas spread over them, and one bucket's jobs are
#: not one hot index partition. Fixed: the API writes and the scheduler reads them.
SHARDS = 4
#: A past bucket is only left behind (the watermark moves past it) once it is this
#: much older than now: room for the API's and the scheduler's clocks to disagree.
WATERMARK_GRACE_S = 60

#: DynamoDB's limit of writes per BatchWriteItem.
BATCH_WRITE_MAX = 25
UNPROCESSED_RETRIES = 5
UNPROCESSED_PAUSE_S = 0.05
#: Fail fast: the API writes timers on the request's path.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0

#: What :meth:`TimerStore.cancel` did: ``cancelled`` — the job was waiting and is now
#: removed, it will never be published; ``not_found`` — no waiting job has this id (it
#: may never have existed, or was already published: ask the ledger); ``publishing`` —
#: a scheduler has claimed it and is publishing it right now (too late to stop).
TimerCancel = Literal["cancelled", "not_found", "publishing"]


class TimerStoreError(AwsError):
    """DynamoDB could not store, read or claim timers (unreachable, refusing, table missing)."""


@dataclass(frozen=True)
class Timer:
    """A delayed job as stored: everything needed to publish it when it is due."""

    job_id: str
    job_type: str
    #: When it becomes due (timezone-aware, UTC).
    due_at: datetime
    #: The envelope to publish, already encoded (the same bytes a job published now gets).
    envelope_json: str
    #: The name of the API key that enqueued it (None: no authentication).
    key_name: str | None = None
    #: FIFO topics: the ordering group and the deduplication id it is published with.
    message_group_id: str | None = None
    deduplication_id: str | None = None
    #: While a scheduler holds it: until when (None: waiting).
    lease_until: datetime | None = None


@dataclass(frozen=True)
class DueRef:
    """A due timer as the index lists it: enough to claim it."""

    job_id: str
    due_at: datetime
    #: The index partition it was found in (``<bucket>#<shard>``).
    partition: str


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def bucket_of(at: datetime) -> int:
    """The due-time bucket of ``at``: epoch seconds rounded down to :data:`BUCKET_S`."""
    return int(at.timestamp()) // BUCKET_S * BUCKET_S


def shard_of(job_id: str) -> int:
    """The index shard of ``job_id`` (stable: a hash, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:4], "big") % SHARDS


def partition(bucket: int, shard: int) -> str:
    """The index partition key of ``bucket``'s ``shard``."""
    return f"{bucket}#{shard}"


def sort_key(due_ms: int, job_id: str = "") -> str:
    """The index sort key: the due time in ms, zero-padded so strings sort as numbers."""
    return f"{due_ms:015d}#{job_id}"


def timer_key(job_id: str) -> dict[str, AttributeValueTypeDef]:
    """The table key of ``job_id``'s timer."""
    return {TABLE_PARTITION_KEY: _s(f"{TIMER_PK_PREFIX}{job_id}"), TABLE_SORT_KEY: _s(TIMER_SK)}


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _str(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return str(value["S"]) if isinstance(value, dict) and "S" in value else None


def _num(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if isinstance(value, dict) and "N" in value else None


def _timer(item: dict[str, Any]) -> Timer:
    lease_ms = _num(item, "lease_until")
    return Timer(
        job_id=_str(item, "job_id") or "",
        job_type=_str(item, "job_type") or "",
        due_at=_from_ms(_num(item, "due_ms") or 0),
        envelope_json=_str(item, "envelope") or "",
        key_name=_str(item, "key_name"),
        message_group_id=_str(item, "message_group_id"),
        deduplication_id=_str(item, "deduplication_id"),
        lease_until=_from_ms(lease_ms) if lease_ms is not None else None,
    )


class TimerStore:
    """Stores delayed jobs and hands due ones to exactly one scheduler replica at a time.

    ``retention_s``: how long after its due time an unpublished timer is kept before
    DynamoDB's time to live deletes it (a safety net: a running scheduler publishes
    a job long before). Thread-safe; the client is asked of :func:`infra.aws.client`
    at each call.
    """

    def __init__(
        self,
        table_name: str,
        *,
        retention_s: float = 7 * 86400.0,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self.table_name = table_name
        self.retention_s = retention_s
        self._timeouts = (connect_timeout_s, read_timeout_s)
        # The oldest bucket this process has made sure the watermark covers.
        self._covered: int | None = None
        self._lock = threading.Lock()

    def _ddb(self) -> DynamoDBClient:
        connect, read = self._timeouts
        return aws.client("dynamodb", connect_timeout_s=connect, read_timeout_s=read)

    def _error(self, doing: str, exc: BotoCoreError | ClientError) -> TimerStoreError:
        if isinstance(exc, ClientError) and is_table_missing(exc):
            return TimerStoreError(
                f"{doing}: the timer table {self.table_name} does not exist:"
                " run `conveyor infra apply`"
            )
        if isinstance(exc, ClientError):
            return TimerStoreError(f"{doing}: DynamoDB refused ({error_code(exc) or 'error'})")
        return TimerStoreError(f"{doing}: DynamoDB is unreachable ({type(exc).__name__})")

    # -- the API: store ----------------------------------------------------------------

    def _item(self, timer: Timer) -> dict[str, AttributeValueTypeDef]:
        due_ms = _ms(timer.due_at)
        item: dict[str, AttributeValueTypeDef] = {
            **timer_key(timer.job_id),
            "job_id": _s(timer.job_id),
            "job_type": _s(timer.job_type),
            "due_ms": _n(due_ms),
            "envelope": _s(timer.envelope_json),
            DUE_BUCKET_ATTRIBUTE: _s(partition(bucket_of(timer.due_at), shard_of(timer.job_id))),
            DUE_SORT_ATTRIBUTE: _s(sort_key(due_ms, timer.job_id)),
            TABLE_TTL_ATTRIBUTE: _n(timer.due_at.timestamp() + self.retention_s),
        }
        for name in ("key_name", "message_group_id", "deduplication_id"):
            value = getattr(timer, name)
            if value:
                item[name] = _s(value)
        return item

    def put_many(self, timers: Sequence[Timer]) -> list[TimerStoreError | None]:
        """Store ``timers`` durably (BatchWriteItem, 25 per call, in parallel).

        One result per timer, in order: None once DynamoDB has it, else why not. A put
        is unconditional: a job id is new, or (idempotency key taken over) the same job.
        """
        results: list[TimerStoreError | None] = [None] * len(timers)
        if not timers:
            return results
        try:
            self._cover(min(bucket_of(t.due_at) for t in timers))
        except TimerStoreError as exc:
            return [exc] * len(timers)
        indexed = list(enumerate(timers))
        chunks = [list(c) for c in _chunks(indexed, BATCH_WRITE_MAX)]

        def write(chunk: list[tuple[int, Timer]]) -> None:
            requests: list[WriteRequestTypeDef] = [
                {"PutRequest": {"Item": self._item(t)}} for _, t in chunk
            ]
            error = self._batch_write(requests, doing="storing delayed jobs")
            if error is not None:
                for index, _ in chunk:
                    results[index] = error

        if len(chunks) <= 1:
            for chunk in chunks:
                write(chunk)
        else:
            with ThreadPoolExecutor(max_workers=4, thread_name_prefix="timers") as pool:
                list(pool.map(write, chunks))
        return results

    def _batch_write(
        self, requests: list[WriteRequestTypeDef], *, doing: str
    ) -> TimerStoreError | None:
        pending = requests
        try:
            for attempt in range(UNPROCESSED_RETRIES + 1):
                answer = self._ddb().batch_write_item(RequestItems={self.table_name: pending})
                # The output's type differs from the input's only in the stubs.
                pending = list(answer.get("UnprocessedItems", {}).get(self.table_name, []))  # type: ignore[arg-type]
                if not pending:
                    return None
                if attempt < UNPROCESSED_RETRIES:
                    time.sleep(exponential_delay_s(attempt + 1, base_s=UNPROCESSED_PAUSE_S))
        except (BotoCoreError, ClientError) as exc:
            log.warning("timers.write_failed", table=self.table_name, error=describe_aws_error(exc))
            return self._error(doing, exc)
        # Items of a batch are independent: some may have been written. A put written
        # twice is the same item; the caller reports every item of the chunk as failed.
        return TimerStoreError(f"{doing}: DynamoDB is throttling writes")

    def _cover(self, bucket: int) -> None:
        """Make sure the watermark is at or below ``bucket`` (once per process, in practice:
        time moves forward, so later timers are in later buckets)."""
        with self._lock:
            if self._covered is not None and self._covered <= bucket:
                return
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key={TABLE_PARTITION_KEY: _s(META_PK), TABLE_SORT_KEY: _s(WATERMARK_SK)},
                UpdateExpression="SET #b = :b",
                ConditionExpression="attribute_not_exists(#b) OR #b > :b",
                ExpressionAttributeNames={"#b": "bucket"},
                ExpressionAttributeValues={":b": _n(bucket)},
            )
        except ClientError as exc:
            if not is_condition_failed(exc):  # failed: it is lower already
                raise self._error("storing delayed jobs", exc) from exc
        except BotoCoreError as exc:
            raise self._error("storing delayed jobs", exc) from exc
        with self._lock:
            self._covered = bucket if self._covered is None else min(self._covered, bucket)

    # -- the scheduler: find, claim, complete ------------------------------------------

    def watermark(self, now: datetime) -> int:
        """The oldest bucket that may hold a timer (the current one when none is recorded:
        every put records one first)."""
        try:
            answer = self._ddb().get_item(
                TableName=self.table_name,
                Key={TABLE_PARTITION_KEY: _s(META_PK), TABLE_SORT_KEY: _s(WATERMARK_SK)},
                ConsistentRead=True,
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reading the timer watermark", exc) from exc
        found = _num(answer.get("Item", {}), "bucket")
        return found if found is not None else bucket_of(now)

    def advance_watermark(self, old: int, new: int) -> bool:
        """Move the watermark from ``old`` (or none) to ``new``; False if another did first."""
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key={TABLE_PARTITION_KEY: _s(META_PK), TABLE_SORT_KEY: _s(WATERMARK_SK)},
                UpdateExpression="SET #b = :new",
                # Exactly from ``old``: a put that lowered it meanwhile wins.
                ConditionExpression="#b = :old",
                ExpressionAttributeNames={"#b": "bucket"},
                ExpressionAttributeValues={":new": _n(new), ":old": _n(old)},
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise self._error("moving the timer watermark", exc) from exc
        except BotoCoreError as exc:
            raise self._error("moving the timer watermark", exc) from exc
        log.debug("timers.watermark_moved", old=old, new=new)
        return True

    def due_in(self, part: str, now: datetime, *, limit: int) -> list[DueRef]:
        """Up to ``limit`` timers of index partition ``part`` due at ``now``, oldest first.

        The index is eventually consistent: a listed timer may be gone already (the
        claim then fails and says so).
        """
        refs: list[DueRef] = []
        start: dict[str, Any] | None = None
        try:
            while len(refs) < limit:
                kwargs: dict[str, Any] = {
                    "TableName": self.table_name,
                    "IndexName": DUE_INDEX,
                    "KeyConditionExpression": "#p = :p AND #s <= :s",
                    "ExpressionAttributeNames": {
                        "#p": DUE_BUCKET_ATTRIBUTE,
                        "#s": DUE_SORT_ATTRIBUTE,
                    },
                    "ExpressionAttributeValues": {
                        ":p": _s(part),
                        # "~" sorts after every id character: every job due at this ms.
                        ":s": _s(sort_key(_ms(now)) + "~"),
                    },
                    "Limit": limit - len(refs),
                }
                if start is not None:
                    kwargs["ExclusiveStartKey"] = start
                answer = self._ddb().query(**kwargs)
                for item in answer.get("Items", []):
                    due, _, job_id = (_str(item, DUE_SORT_ATTRIBUTE) or "").partition("#")
                    if job_id:
                        refs.append(DueRef(job_id, _from_ms(int(due)), part))
                start = answer.get("LastEvaluatedKey")
                if not start:
                    break
        except (BotoCoreError, ClientError) as exc:
            raise self._error("listing due jobs", exc) from exc
        return refs

    def claim(self, job_id: str, owner: str, now: datetime, lease_s: float) -> Timer | None:
        """Take ``job_id``'s timer for ``lease_s`` (a conditional write); None if another
        replica holds an unexpired lease on it or it is gone (published, cancelled)."""
        now_ms = _ms(now)
        try:
            answer = self._ddb().update_item(
                TableName=self.table_name,
                Key=timer_key(job_id),
                UpdateExpression="SET #o = :o, #u = :u",
                ConditionExpression="attribute_exists(#pk) AND"
                " (attribute_not_exists(#u) OR #u < :now)",
                ExpressionAttributeNames={
                    "#pk": TABLE_PARTITION_KEY,
                    "#o": "lease_owner",
                    "#u": "lease_until",
                },
                ExpressionAttributeValues={
                    ":o": _s(owner),
                    ":u": _n(now_ms + lease_s * 1000),
                    ":now": _n(now_ms),
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return None
            raise self._error("claiming a due job", exc) from exc
        except BotoCoreError as exc:
            raise self._error("claiming a due job", exc) from exc
        return _timer(answer.get("Attributes", {}))

    def release(self, job_id: str, owner: str) -> None:
        """Give a claimed timer back at once (its publish failed): the next turn retries it.

        Never raises: an unreleased claim is released by its lease expiring."""
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key=timer_key(job_id),
                UpdateExpression="REMOVE #o, #u",
                ConditionExpression="#o = :o",
                ExpressionAttributeNames={"#o": "lease_owner", "#u": "lease_until"},
                ExpressionAttributeValues={":o": _s(owner)},
            )
        except (BotoCoreError, ClientError) as exc:
            if not is_condition_failed(exc):
                log.warning("timers.release_failed", job_id=job_id, error=str(exc))

    def complete(self, job_ids: Sequence[str]) -> TimerStoreError | None:
        """Delete published timers (BatchWriteItem, 25 per call). An error (logged) leaves
        them to be published again after their lease: the same job ids, a duplicate the
        idempotency guard collapses."""
        error: TimerStoreError | None = None
        for chunk in _chunks(list(dict.fromkeys(job_ids)), BATCH_WRITE_MAX):
            requests: list[WriteRequestTypeDef] = [
                {"DeleteRequest": {"Key": timer_key(job_id)}} for job_id in chunk
            ]
            error = self._batch_write(requests, doing="deleting published timers") or error
        return error

    # -- anyone: look up, cancel -------------------------------------------------------

    def get(self, job_id: str) -> Timer | None:
        """The waiting job with this id, or None (never stored, published, or cancelled)."""
        try:
            answer = self._ddb().get_item(
                TableName=self.table_name, Key=timer_key(job_id), ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error("reading a delayed job", exc) from exc
        item = answer.get("Item")
        return _timer(item) if item else None

    def cancel(self, job_id: str, *, now: datetime | None = None) -> TimerCancel:
        """Remove a waiting job so it is never published (a conditional delete).

        ``publishing`` when a scheduler holds an unexpired lease on it. A lease that
        expired belongs to a scheduler that died before publishing (a live one checks
        its lease before it publishes): such a job is cancelled like a waiting one.
        Raises :class:`TimerStoreError` when DynamoDB cannot answer.
        """
        now_ms = _ms(now or datetime.now(UTC))
        try:
            self._ddb().delete_item(
                TableName=self.table_name,
                Key=timer_key(job_id),
                ConditionExpression="attribute_exists(#pk) AND"
                " (attribute_not_exists(#u) OR #u < :now)",
                ExpressionAttributeNames={"#pk": TABLE_PARTITION_KEY, "#u": "lease_until"},
                ExpressionAttributeValues={":now": _n(now_ms)},
            )
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise self._error("cancelling a delayed job", exc) from exc
            # Gone, or held: which one (a consistent read; a race with the claimer's
            # delete reads as gone, which it then is).
            return "not_found" if self.get(job_id) is None else "publishing"
        except BotoCoreError as exc:
            raise self._error("cancelling a delayed job", exc) from exc
        log.info("timers.cancelled", job_id=job_id)
        return "cancelled"
