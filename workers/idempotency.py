"""The idempotency guard's memory: which job ids succeeded on which queue, in DynamoDB.

One item per success in the table ``<project>-<environment>-succeeded``, which
``conveyor infra apply`` creates when a job type sets ``idempotency_guard``:
partition key ``pk`` = ``<queue>#<job id>`` (the queue's queues.yaml name), and
``expires_at`` (epoch seconds) for DynamoDB's time to live.

The store is best effort on purpose. The guard only saves duplicate work —
handlers must be idempotent anyway — so the store never fails a job: a read that
fails answers "not succeeded" (the job runs, as it would without the guard) and
a write that fails is logged (a later duplicate would run again).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from infra import aws, tracing
from infra.aws.errors import describe_aws_error
from infra.aws.names import TABLE_PARTITION_KEY, TABLE_TTL_ATTRIBUTE, succeeded_table_name
from infra.job_metrics import NO_POOL
from infra.ledger import ledger_for
from infra.settings import load_settings, running_in_aws_lambda
from infra.topology import Topology
from workers.emf import EmfMetrics
from workers.hooks import (
    DEFAULT_HOOKS,
    Hook,
    IdempotencyGuard,
    Inline,
    LedgerHook,
    connect_trace_flush,
    record_metrics,
    trace_attempt,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

log = structlog.stdlib.get_logger("conveyor.worker")

#: How long a success is remembered. SQS keeps a message at most 14 days, so a
#: duplicate (a redelivery, or a copy dead-lettered by the native redrive and moved
#: back) is received within 14 days of being sent; the extra day covers a redrive
#: under way at the end of that window.
REMEMBER_S = 15 * 86400


def job_types_to_guard(topology: Topology, queues: Iterable[str]) -> list[str]:
    """The job types of ``queues`` (declared names) that set ``idempotency_guard``, sorted."""
    return sorted(
        {
            job_type
            for queue in queues
            for job_type in topology.job_types_of_queue(queue)
            if job_type in topology.job_types and topology.job_types[job_type].idempotency_guard
        }
    )


class DynamoSuccessStore:
    """A :class:`~workers.hooks.SuccessStore` on the DynamoDB table ``table_name``.

    The client is asked of :func:`infra.aws.client` at each call, so a forked pool
    process uses its own connections.
    """

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @staticmethod
    def key(queue: str, job_id: str) -> str:
        """The partition key of a success: ``<queue>#<job id>``."""
        return f"{queue}#{job_id}"

    def _key(self, queue: str, job_id: str) -> dict[str, AttributeValueTypeDef]:
        return {TABLE_PARTITION_KEY: {"S": self.key(queue, job_id)}}

    def succeeded(self, queue: str, job_id: str) -> bool:
        """Whether ``job_id`` succeeded on ``queue`` (False when the store cannot tell)."""
        try:
            found = aws.client("dynamodb").get_item(
                TableName=self.table_name, Key=self._key(queue, job_id), ConsistentRead=True
            )
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "idempotency.check_failed",
                table=self.table_name,
                error=describe_aws_error(exc),
                consequence="the job runs",
            )
            return False
        item = found.get("Item")
        if item is None:
            return False
        # DynamoDB deletes expired items lazily (within days): one past its time counts
        # as gone, so a success is remembered for REMEMBER_S, not for "a while longer".
        try:
            return float(str(item[TABLE_TTL_ATTRIBUTE]["N"])) > time.time()
        except (KeyError, TypeError, ValueError):
            return True  # recorded, without a readable expiry: still a success

    def mark_succeeded(self, queue: str, job_id: str) -> None:
        """Record a success for :data:`REMEMBER_S`; a failure is logged, never raised."""
        now = time.time()
        item: dict[str, AttributeValueTypeDef] = {
            **self._key(queue, job_id),
            TABLE_TTL_ATTRIBUTE: {"N": str(int(now + REMEMBER_S))},
            "succeeded_at": {"N": str(int(now))},
        }
        try:
            aws.client("dynamodb").put_item(TableName=self.table_name, Item=item)
        except (BotoCoreError, ClientError) as exc:
            log.warning(
                "idempotency.record_failed",
                table=self.table_name,
                error=describe_aws_error(exc),
                consequence="a duplicate of this job would run again",
            )


#: Set in AWS Lambda's runtime: there, ledger writes are made inline (see workers.hooks.Inline).
#: Read through :func:`infra.settings.running_in_aws_lambda`.
LAMBDA_ENVIRONMENT_VARIABLE = "AWS_LAMBDA_FUNCTION_NAME"


def job_hooks(topology: Topology, queues: list[str]) -> tuple[Hook, ...]:
    """The hooks around every job of ``queues``: the defaults, the job ledger and the guard.

    Shared by the Celery workers and the Lambda adapter. The metrics hooks are the
    sinks ``CONVEYOR_METRICS`` names (Prometheus, EMF or both). The ledger hook is
    there when a job type of ``queues`` records its status (``ledger: true``).
    """
    hooks: list[Hook] = list(DEFAULT_HOOKS)
    worker = load_settings().worker
    sinks = worker.metric_sinks()
    if "prometheus" not in sinks:
        hooks.remove(record_metrics)
    if "emf" in sinks:
        # Beside the Prometheus hook (or in its place): inside log_context, outside the rest.
        pools = {q: topology.pool_of_queue(q) or NO_POOL for q in topology.queues}
        emf = EmfMetrics(
            topology.project, topology.environment, pools, namespace=worker.metrics_namespace
        )
        hooks.insert(1, emf)
    if tracing.enabled():
        # Outermost: the attempt span covers the ledger and guard calls (their boto3
        # calls are its children through the botocore instrumentation).
        tracing.configure("conveyor-worker")
        connect_trace_flush()
        hooks.insert(0, trace_attempt)
    ledger = ledger_for(topology)
    if ledger is not None and any(
        ledger.records(jt) for q in queues for jt in topology.job_types_of_queue(q)
    ):
        inline = running_in_aws_lambda()
        submitter = Inline(ledger.record_run) if inline else None
        # check_cancelled: `running` is written before the handler, so a cancelled job
        # is deleted unrun (every pool and the Lambda adapter build their hooks here).
        hooks.append(LedgerHook(ledger, submitter=submitter, check_cancelled=True))
    guarded = job_types_to_guard(topology, queues)
    if guarded:
        # Innermost, so a skipped duplicate is still logged with its job context and counted.
        store = DynamoSuccessStore(succeeded_table_name(topology))
        hooks.append(IdempotencyGuard(store, guarded))
    return tuple(hooks)
