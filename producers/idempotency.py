"""Idempotency keys: the same key within the retention window is the same job.

One DynamoDB item per key (table ``<project>-<environment>-idempotency``, partition
key ``pk`` = ``<scope>#<key>``, where the scope is the API key's name, TTL on
``expires_at``)::

    {pk, job_id, job_type, fingerprint, state, lease_until, created_at, expires_at}

A request **claims** a key with a conditional PutItem (``attribute_not_exists(pk)``,
or the old item has expired but DynamoDB's lazy TTL has not removed it yet) in
state ``pending`` with a short lease, then publishes, then **settles** it:

- published → state ``published`` (BatchWriteItem). A later request with the same
  key and payload gets the original job id back and publishes nothing; with
  another payload it gets 409.
- not published → state ``failed``. A retry with the same key and payload takes
  the key over (conditional UpdateItem) and publishes under the *same* job id.
- crashed in between (no settle): once the lease expires, a retry takes it over
  too. A concurrent duplicate that arrives while the lease runs gets 409
  "in progress" with Retry-After.

Taking over always reuses the first job id, so if the first attempt did reach
SNS (a timeout after SNS accepted), the copy carries the same job id (and, on a
FIFO topic, the same deduplication id): at-least-once, never two different jobs.
A key that cannot be claimed (DynamoDB unreachable, table missing) is a 503 and
the job is not published: never published without the key recorded.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from infra import aws
from infra.aws.errors import is_condition_failed, is_table_missing
from infra.errors import AwsError
from infra.logs import get_logger
from infra.settings import DEFAULT_LEASE_S, DEFAULT_RETENTION_S
from producers.publisher import RETRY_AFTER_NOT_PROVISIONED_S, classify

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

log = get_logger("conveyor.api.idempotency")

#: BatchWriteItem takes at most 25 items.
_WRITE_BATCH = 25
_THREADS = 8

ClaimKind = Literal["new", "replay", "conflict", "in_progress"]


@dataclass(frozen=True)
class Claim:
    """What claiming a key found. ``new``: publish ``job_id``; otherwise do not publish."""

    kind: ClaimKind
    pk: str
    job_id: str
    job_type: str
    fingerprint: str
    expires_at: int
    retry_after_s: int | None = None

    @property
    def deduplication_id(self) -> str:
        """The FIFO deduplication id of the key: stable, at most 128 characters."""
        return hashlib.sha256(self.pk.encode("utf-8")).hexdigest()


class IdempotencyUnavailableError(AwsError):
    """The key could not be claimed; the job must not be published."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


ClaimRequest = tuple[str, str, str, str, str]
"""(scope, key, fingerprint, job type, job id to use if the key is new)."""


class IdempotencyStore:
    """Claims and settles idempotency keys in one DynamoDB table (thread-safe)."""

    def __init__(
        self,
        table_name: str,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        lease_s: float = DEFAULT_LEASE_S,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float = 10.0,
    ) -> None:
        self.table_name = table_name
        self.retention_s = retention_s
        self.lease_s = lease_s
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="idempotency")

    def _ddb(self) -> DynamoDBClient:
        connect, read = self._timeouts
        return aws.client("dynamodb", connect_timeout_s=connect, read_timeout_s=read)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)

    # -- claiming -----------------------------------------------------------------------

    def claim_many(
        self, requests: Sequence[ClaimRequest]
    ) -> list[Claim | IdempotencyUnavailableError]:
        """Claim every key (in parallel); one result per request, in order, never raising."""
        if len(requests) == 1:
            return [self._claim_safely(requests[0])]
        return list(self._pool.map(self._claim_safely, requests))

    def _claim_safely(self, request: ClaimRequest) -> Claim | IdempotencyUnavailableError:
        try:
            return self.claim(*request)
        except IdempotencyUnavailableError as exc:
            return exc

    def claim(self, scope: str, key: str, fingerprint: str, job_type: str, job_id: str) -> Claim:
        """Claim ``key`` for a job, or say why not; raises :class:`IdempotencyUnavailableError`."""
        pk = f"{scope}#{key}"
        for _ in range(3):  # the item can vanish (TTL) between a failed put and the get
            now = time.time()
            expires_at = int(now + self.retention_s)
            item = {
                "pk": {"S": pk},
                "job_id": {"S": job_id},
                "job_type": {"S": job_type},
                "fingerprint": {"S": fingerprint},
                "state": {"S": "pending"},
                "lease_until": {"N": str(math.ceil(now + self.lease_s))},
                "created_at": {"N": str(int(now))},
                "expires_at": {"N": str(expires_at)},
            }
            try:
                self._ddb().put_item(
                    TableName=self.table_name,
                    Item=item,
                    ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                    ExpressionAttributeValues={":now": {"N": str(int(now))}},
                )
                return Claim("new", pk, job_id, job_type, fingerprint, expires_at)
            except ClientError as exc:
                if not is_condition_failed(exc):
                    raise self._unavailable(exc) from exc
            except Exception as exc:
                raise self._unavailable(exc) from exc
            existing = self._get(pk)
            if existing is not None:
                return self._existing(existing, pk, fingerprint)
        raise IdempotencyUnavailableError("the idempotency key could not be claimed", 1)

    def find(self, scope: str, key: str) -> tuple[str, str] | None:
        """(job id, job type) the idempotency ``key`` of ``scope`` names, None if none (or
        expired); raises :class:`IdempotencyUnavailableError` (the console's job lookup)."""
        item = self._get(f"{scope}#{key}")
        if item is None or int(item["expires_at"]["N"]) <= time.time():
            return None
        return item["job_id"]["S"], item["job_type"]["S"]

    def _get(self, pk: str) -> dict[str, Any] | None:
        try:
            got = self._ddb().get_item(
                TableName=self.table_name, Key={"pk": {"S": pk}}, ConsistentRead=True
            )
        except Exception as exc:
            raise self._unavailable(exc) from exc
        item = got.get("Item")
        return dict(item) if item else None

    def _existing(self, item: dict[str, Any], pk: str, fingerprint: str) -> Claim:
        job_id = item["job_id"]["S"]
        job_type = item["job_type"]["S"]
        stored = item["fingerprint"]["S"]
        expires_at = int(item["expires_at"]["N"])
        if stored != fingerprint:
            return Claim("conflict", pk, job_id, job_type, stored, expires_at)
        state = item["state"]["S"]
        if state == "published":
            return Claim("replay", pk, job_id, job_type, stored, expires_at)
        now = time.time()
        lease_until = int(item["lease_until"]["N"])
        if state == "pending" and lease_until >= now:
            wait_s = max(1, math.ceil(lease_until - now))
            return Claim("in_progress", pk, job_id, job_type, stored, expires_at, wait_s)
        # failed, or pending with an expired lease (its request crashed): take it over,
        # keeping its job id; the condition makes one of two racing retries win.
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key={"pk": {"S": pk}},
                UpdateExpression="SET #state = :pending, lease_until = :lease",
                ConditionExpression="#state = :state AND lease_until = :old",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":pending": {"S": "pending"},
                    ":lease": {"N": str(math.ceil(now + self.lease_s))},
                    ":state": {"S": state},
                    ":old": {"N": str(lease_until)},
                },
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return Claim("in_progress", pk, job_id, job_type, stored, expires_at, 1)
            raise self._unavailable(exc) from exc
        except Exception as exc:
            raise self._unavailable(exc) from exc
        log.info("idempotency key taken over", job_id=job_id, previous_state=state)
        return Claim("new", pk, job_id, job_type, stored, expires_at)

    def _unavailable(self, exc: Exception) -> IdempotencyUnavailableError:
        if is_table_missing(exc):
            # The answer names no table (clients see this message); the log does.
            log.warning("idempotency table missing", table=self.table_name)
            return IdempotencyUnavailableError(
                "the idempotency keys' table does not exist: run `conveyor infra apply`",
                RETRY_AFTER_NOT_PROVISIONED_S,
            )
        error = classify(exc, what="DynamoDB (the idempotency keys)")
        log.warning("idempotency key not claimed", reason=error.detail, error=repr(exc))
        return IdempotencyUnavailableError(error.detail, error.retry_after_s or 5)

    # -- settling -----------------------------------------------------------------------

    def mark_published(self, claims: Sequence[Claim]) -> None:
        """Record that these claims' jobs were published; logs failures, never raises.

        A claim left ``pending`` (the write failed) is taken over once its lease
        expires: the job may then be published again, under the same job id.
        """
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": c.pk},
                        "job_id": {"S": c.job_id},
                        "job_type": {"S": c.job_type},
                        "fingerprint": {"S": c.fingerprint},
                        "state": {"S": "published"},
                        "lease_until": {"N": "0"},
                        "created_at": {"N": str(int(time.time()))},
                        "expires_at": {"N": str(c.expires_at)},
                    }
                }
            }
            for c in claims
        ]
        batches = [items[i : i + _WRITE_BATCH] for i in range(0, len(items), _WRITE_BATCH)]
        list(self._pool.map(self._write_batch, batches))

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        pending: Any = {self.table_name: batch}
        for _ in range(3):
            try:
                response = self._ddb().batch_write_item(RequestItems=pending)
            except Exception as exc:  # noqa: BLE001 - settling never fails a published job
                log.warning(
                    "idempotency keys not marked published", count=len(batch), error=repr(exc)
                )
                return
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
        left = len(pending.get(self.table_name, []))
        log.warning("idempotency keys not marked published", count=left, error="unprocessed")

    def release(self, claims: Sequence[Claim]) -> None:
        """Mark these claims ``failed`` so a retry can publish; logs failures, never raises."""
        list(self._pool.map(self._release_one, claims))

    def _release_one(self, claim: Claim) -> None:
        try:
            self._ddb().update_item(
                TableName=self.table_name,
                Key={"pk": {"S": claim.pk}},
                UpdateExpression="SET #state = :failed",
                ConditionExpression="job_id = :job AND #state = :pending",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"},
                    ":job": {"S": claim.job_id},
                    ":pending": {"S": "pending"},
                },
            )
        except Exception as exc:  # noqa: BLE001 - the lease expiry releases it anyway
            log.warning("idempotency key not released", job_id=claim.job_id, error=repr(exc))
