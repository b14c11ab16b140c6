"""The pydantic model of queues.yaml: topics, queues, job types, retry policies, pools.

Field-level rules (types, ranges, unknown keys) live here; rules that relate one
part of the file to another live in :mod:`infra.topology.checks`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from infra.backoff import Jitter
from infra.cron import CronError, Recurrence, normalize_cron, recurrence, zone
from infra.durations import format_duration_s, parse_duration_s
from infra.limits import (
    MAX_DELAY_S,
    MAX_RECEIVE_COUNT,
    MAX_RETENTION_S,
    MAX_VISIBILITY_TIMEOUT_S,
    MIN_RETENTION_S,
    SNS_MAX_MESSAGE_BYTES,
)

#: Room left under SNS_MAX_MESSAGE_BYTES by the default claim-check threshold (message
#: attributes and the rounding of other producers' encoders).
CLAIM_CHECK_MARGIN_BYTES = 1024
#: The largest payload the producer API may accept at all (through S3).
MAX_PAYLOAD_BYTES = 100 * 1024 * 1024

#: SQS queue names, including ``.fifo``, are at most 80 characters.
MAX_QUEUE_NAME_LEN = 80
#: Slack between a queue's attempt budget and its native redrive: a message can be
#: received without being run (released on shutdown, a worker killed before it
#: started the job), and the worker, not SQS, should be the one to dead-letter it.
RECEIVE_COUNT_SLACK = 3


def _duration(low_s: float, high_s: float, *, positive: bool = False) -> BeforeValidator:
    def check(value: object) -> float:
        seconds = parse_duration_s(value)
        if positive and seconds <= 0:
            raise ValueError(f"invalid duration {value!r}: must be greater than 0")
        if not low_s <= seconds <= high_s:
            raise ValueError(
                f"invalid duration {value!r}: must be between {format_duration_s(low_s)}"
                f" and {format_duration_s(high_s)}"
            )
        return seconds

    return BeforeValidator(check)


VisibilityS = Annotated[float, _duration(0, MAX_VISIBILITY_TIMEOUT_S)]
RetentionS = Annotated[float, _duration(MIN_RETENTION_S, MAX_RETENTION_S)]
DelayS = Annotated[float, _duration(0, MAX_DELAY_S)]
MaxRuntimeS = Annotated[float, _duration(0, MAX_VISIBILITY_TIMEOUT_S, positive=True)]
BackoffS = Annotated[float, _duration(0, MAX_VISIBILITY_TIMEOUT_S, positive=True)]
#: S3 lifecycle rules count whole days: at least one, at most ten years here.
PayloadExpiryS = Annotated[float, _duration(86400, 3650 * 86400)]
#: How long the job ledger keeps a job's record (DynamoDB time to live).
LedgerRetentionS = Annotated[float, _duration(3600, 3650 * 86400)]

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
JobTypeName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$", max_length=100)
]
#: ``package.module:attribute``
ImportPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", max_length=200)
]


class _Strict(BaseModel):
    # Unknown keys are errors: a typo such as `visibilty_timeout_s` must not be ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Backoff(_Strict):
    """Exponential backoff: ``min(max_s, base_s * 2**(attempt-1))``, then jitter."""

    base_s: BackoffS = 1.0
    max_s: BackoffS = 300.0
    #: ``equal``: half fixed, half random (default); ``full``: uniform in [0, delay];
    #: ``none``: the exact exponential schedule.
    jitter: Jitter = "equal"

    @model_validator(mode="after")
    def _max_not_below_base(self) -> Backoff:
        if self.max_s < self.base_s:
            raise ValueError(f"max_s ({self.max_s:g}) must not be below base_s ({self.base_s:g})")
        return self


class BackoffOverride(_Strict):
    """Backoff fields that replace the inherited ones where given."""

    base_s: BackoffS | None = None
    max_s: BackoffS | None = None
    jitter: Jitter | None = None


class RetryOverride(_Strict):
    """Retry fields for one job type on one queue."""

    max_attempts: Annotated[int, Field(ge=1, le=MAX_RECEIVE_COUNT - 1)] | None = None
    backoff: BackoffOverride | None = None


class QueueRetry(RetryOverride):
    """A queue's retry policy; unset fields come from ``defaults.retry``."""

    job_types: dict[JobTypeName, RetryOverride] = Field(default_factory=dict)


class RetryPolicy(_Strict):
    """A complete retry policy: how many attempts, and how long between them."""

    max_attempts: Annotated[int, Field(ge=1, le=MAX_RECEIVE_COUNT - 1)] = 5
    backoff: Backoff = Field(default_factory=Backoff)

    def merged(self, override: RetryOverride | None) -> RetryPolicy:
        """This policy with the fields ``override`` sets replaced."""
        if override is None:
            return self
        backoff = self.backoff
        if override.backoff is not None:
            fields = override.backoff.model_dump(exclude_none=True)
            backoff = Backoff.model_validate({**backoff.model_dump(), **fields})
        return RetryPolicy(max_attempts=override.max_attempts or self.max_attempts, backoff=backoff)


class Defaults(_Strict):
    """Values every queue inherits unless it says otherwise."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class Topic(_Strict):
    """An SNS topic jobs are published to."""

    fifo: bool = False
    #: FIFO topics only: deduplicate on the message body's hash.
    content_based_deduplication: bool = False
    description: str = ""
    #: IAM principal ARNs, besides the producer API's role, allowed to publish to the topic
    #: (the CloudFormation export's topic policy; checked by infra.topology.checks).
    publishers: list[str] = Field(default_factory=list)


class Subscription(_Strict):
    """A queue's subscription to a topic, filtered on the job type."""

    topic: Name
    #: The job types this queue receives from the topic; omitted = all of them.
    job_types: list[JobTypeName] | None = None


class DeadLetter(_Strict):
    """The queue's dead-letter queue, created automatically as ``<queue>-dlq``."""

    #: The native redrive backstop; defaults to the largest attempt budget + 3.
    max_receive_count: Annotated[int, Field(ge=1, le=MAX_RECEIVE_COUNT)] | None = None
    retention_s: RetentionS = float(MAX_RETENTION_S)


class Queue(_Strict):
    """An SQS queue, its subscriptions, its DLQ and its retry policy."""

    fifo: bool = False
    visibility_timeout_s: VisibilityS = 60.0
    retention_s: RetentionS = 4 * 86400.0
    delay_s: DelayS = 0.0
    subscriptions: list[Subscription] = Field(default_factory=list)
    retry: QueueRetry = Field(default_factory=QueueRetry)
    dead_letter: DeadLetter = Field(default_factory=DeadLetter)
    #: Per-queue handlers, for fan-out where two queues treat one job type differently.
    handlers: dict[JobTypeName, ImportPath] = Field(default_factory=dict)
    description: str = ""


class JobType(_Strict):
    """A kind of job: where it is published and how its payload looks."""

    topic: Name
    #: A pydantic model class, ``module:Class``; payloads are validated against it.
    payload: ImportPath
    #: The default handler, ``module:function``; queues may override it.
    handler: ImportPath | None = None
    #: Longest a run may take. The message's visibility is extended while the job
    #: runs (a heartbeat), up to this; past it the job is stopped (soft, then hard
    #: time limit; process pools only) and the attempt counts as failed.
    max_runtime_s: MaxRuntimeS | None = None
    #: Skip a delivery whose job id already succeeded on the same queue (a redelivery
    #: or a redrive duplicate) instead of running the handler again. Successes are
    #: recorded in the DynamoDB table ``<project>-<environment>-succeeded``, which
    #: ``conveyor infra apply`` creates when any job type sets this.
    idempotency_guard: bool = False
    #: Record the job's status (queued, then per queue running / retrying / succeeded /
    #: dead-lettered) in the job ledger, the DynamoDB table
    #: ``<project>-<environment>-jobs`` that ``conveyor infra apply`` creates when any
    #: job type sets this; ``GET /v1/jobs/{id}`` reads it.
    ledger: bool = False
    #: FIFO topics: the payload field whose value is the job's MessageGroupId, so jobs
    #: with the same value (one order, one account) are delivered in order; unset, or
    #: a job without the field, gets a group of its own (no ordering, full parallelism).
    message_group_field: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]\w{0,63}$")] | None
    ) = None
    description: str = ""


class Payloads(_Strict):
    """Large payloads: above a threshold the payload travels through S3 (a claim check).

    The envelope then carries ``dataref`` (``s3://bucket/key``) instead of ``data``;
    workers fetch it before calling the handler. The bucket is
    ``<project>-<environment>-payloads-<account>-<region>`` (S3 names are global).
    """

    #: An encoded envelope larger than this goes through S3 (default: just under
    #: SNS's 256 KiB limit). 0 sends every payload through S3.
    claim_check_threshold_bytes: Annotated[
        int, Field(ge=0, le=SNS_MAX_MESSAGE_BYTES - CLAIM_CHECK_MARGIN_BYTES)
    ] = SNS_MAX_MESSAGE_BYTES - CLAIM_CHECK_MARGIN_BYTES
    #: The hard maximum of a payload; the producer API answers 413 above it.
    max_bytes: Annotated[int, Field(ge=1, le=MAX_PAYLOAD_BYTES)] = 10 * 1024 * 1024
    #: Objects are deleted this long after upload (an S3 lifecycle rule, in whole days).
    #: It must outlast the job: at least the longest queue and DLQ retention.
    expiry_s: PayloadExpiryS = 30 * 86400.0


class LedgerSettings(_Strict):
    """The job ledger (the status of jobs whose type sets ``ledger: true``)."""

    #: A job's record is deleted (DynamoDB time to live) this long after its last update.
    retention_s: LedgerRetentionS = 7 * 86400.0


class Replicas(_Strict):
    """Bounds on the number of worker nodes of a pool."""

    min: Annotated[int, Field(ge=0, le=1000)] = 1
    max: Annotated[int, Field(ge=1, le=1000)] = 1

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not be above max ({self.max})")
        return self


#: Autoscaler timings: at least a tenth of a second (tests), at most a day.
AutoscaleS = Annotated[float, _duration(0.1, 86400)]
CooldownS = Annotated[float, _duration(0, 86400)]


class Autoscale(_Strict):
    """How the backlog autoscaler sizes a pool (``conveyor workers autoscale``, and the
    ECS/KEDA exports): desired nodes = ceil(backlog / target_backlog_per_worker),
    within ``replicas``, where backlog = visible + in-flight messages of its queues."""

    #: Messages waiting or running per worker node that the autoscaler aims at.
    target_backlog_per_worker: Annotated[int, Field(ge=1, le=1_000_000)] = 10
    #: After scaling out, wait this long before scaling out again.
    scale_out_cooldown_s: CooldownS = 60.0
    #: Scale in only once the backlog has stayed low this long.
    scale_in_cooldown_s: CooldownS = 300.0
    #: How often the backlog is sampled and a decision made.
    interval_s: AutoscaleS = 15.0


#: Bounds of a pool's recycling settings (a billion jobs; 1 TiB).
MAX_JOBS_PER_CHILD = 1_000_000_000
MAX_MEMORY_PER_CHILD_MB = 1024 * 1024


class Pool(_Strict):
    """A named group of identical worker nodes consuming some queues."""

    queues: Annotated[list[Name], Field(min_length=1)]
    #: Jobs run at once in one node (Celery's concurrency).
    concurrency: Annotated[int, Field(ge=1, le=256)] = 2
    replicas: Replicas = Field(default_factory=Replicas)
    #: Execution pool: processes (isolation, CPU-bound jobs), threads (blocking I/O),
    #: solo (one job at a time in the node) or asyncio (``async def`` handlers, many
    #: jobs on one event loop); see docs/pools.md.
    worker_pool: Literal["prefork", "threads", "solo", "asyncio"] = "prefork"
    #: Backlog autoscaling; omitted: the defaults of :class:`Autoscale`.
    autoscale: Autoscale | None = None
    #: Recycling, a safety net against memory that grows with every job: a job
    #: process is replaced after this many jobs (prefork: each pool child, Celery's
    #: ``worker_max_tasks_per_child``; threads and solo: the node, which drains like
    #: on SIGTERM and exits for its supervisor to restart it). Unset: never.
    max_jobs_per_child: Annotated[int, Field(ge=1, le=MAX_JOBS_PER_CHILD)] | None = None
    #: ... or once its resident memory (RSS, shared pages included) passes this many
    #: MiB after a job (prefork: Celery's ``worker_max_memory_per_child``). Unset: never.
    max_memory_per_child_mb: Annotated[int, Field(ge=1, le=MAX_MEMORY_PER_CHILD_MB)] | None = None

    @property
    def autoscaling(self) -> Autoscale:
        """The effective autoscale settings (declared, or the defaults)."""
        return self.autoscale or Autoscale()


#: A schedule's interval: a whole number of seconds, from one second to a year.
EveryS = Annotated[float, _duration(1, 366 * 86400)]
#: How late a tick may still fire on time (see :class:`Schedule`).
MisfireGraceS = Annotated[float, _duration(1, 86400)]
ScheduleJitterS = Annotated[float, _duration(0, 86400)]
#: Missed ticks a ``catch_up`` schedule fires when none is given.
DEFAULT_CATCH_UP_LIMIT = 10


class Schedule(_Strict):
    """A job published on a timetable by the scheduler role (``conveyor scheduler``).

    Each tick fires once across every scheduler replica, as a job of ``job_type`` with
    payload ``data`` and a job id derived from the schedule's name and the tick. A tick
    no scheduler reached within ``misfire_grace_s`` (the schedulers were down) is
    *missed*: ``misfire: skip`` drops it, ``misfire: catch_up`` fires the most recent
    ``catch_up_limit`` missed ticks late, oldest first.
    """

    #: A 5-field cron expression or an alias (``@hourly``, ``@daily``, ``@weekly``,
    #: ``@monthly``, ``@yearly``), read in ``timezone``. Exactly one of cron and every.
    cron: str | None = None
    #: A fixed interval (``30s``, ``5m``, ``1h``), whole seconds, counted from the
    #: Unix epoch in UTC (``5m`` fires at :00, :05, … of every hour).
    every: EveryS | None = None
    #: The IANA timezone the cron expression is read in (DST-correct); cron only.
    timezone: str = "UTC"
    job_type: JobTypeName
    #: The payload; ``conveyor check`` validates it against the job type's model.
    data: dict[str, Any] = Field(default_factory=dict)
    misfire: Literal["skip", "catch_up"] = "skip"
    #: ``catch_up`` only: the most missed ticks fired after an outage (default 10).
    catch_up_limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    #: A tick fired this late is still on time; later, it is missed (see misfire).
    misfire_grace_s: MisfireGraceS = 60.0
    #: Each tick fires up to this much later (a delay derived from the schedule and
    #: the tick, the same on every replica), to spread schedules that share a time.
    jitter_s: ScheduleJitterS = 0.0
    #: false: the schedule never fires (``conveyor schedules pause`` stops one at run time).
    enabled: bool = True
    description: str = ""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return None if value is None else normalize_cron(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        zone(value)
        return value

    @field_validator("every")
    @classmethod
    def _whole_seconds(cls, value: float | None) -> float | None:
        if value is not None and value != int(value):
            raise ValueError(f"{value:g}s is not a whole number of seconds")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("set exactly one of cron and every")
        if self.every is not None and self.timezone != "UTC":
            raise ValueError(
                "timezone applies to cron schedules only (every counts from the Unix epoch"
                " in UTC; use cron for wall-clock times)"
            )
        if self.catch_up_limit is not None and self.misfire != "catch_up":
            raise ValueError("catch_up_limit applies to misfire: catch_up only")
        if self.every is not None and self.jitter_s >= self.every:
            raise ValueError(
                f"jitter_s ({self.jitter_s:g}) must be below every ({self.every:g}s):"
                " a tick would fire after the next one"
            )
        return self

    @property
    def catch_up_count(self) -> int:
        """Missed ticks fired after an outage: 0 for ``skip``."""
        if self.misfire == "skip":
            return 0
        return self.catch_up_limit or DEFAULT_CATCH_UP_LIMIT

    def recurrence(self) -> Recurrence:
        """When this schedule's ticks fall (:mod:`infra.cron`)."""
        try:
            return recurrence(cron=self.cron, every_s=self.every, timezone=self.timezone)
        except CronError as exc:  # validated above; kept for a readable failure
            raise ValueError(str(exc)) from None


class Topology(_Strict):
    """The whole of queues.yaml."""

    version: Literal[1] = 1
    #: Resource names are ``<project>-<environment>-<name>``.
    project: Name = "conveyor"
    environment: Name = "dev"
    defaults: Defaults = Field(default_factory=Defaults)
    topics: Annotated[dict[Name, Topic], Field(min_length=1)]
    queues: Annotated[dict[Name, Queue], Field(min_length=1)]
    job_types: Annotated[dict[JobTypeName, JobType], Field(min_length=1)]
    pools: dict[Name, Pool] = Field(default_factory=dict)
    payloads: Payloads = Field(default_factory=Payloads)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    #: Jobs published on a timetable (cron or a fixed interval) by ``conveyor scheduler``.
    schedules: dict[Name, Schedule] = Field(default_factory=dict)

    # -- physical names -------------------------------------------------------------

    def resource_name(self, name: str, *, fifo: bool = False) -> str:
        """The AWS name of a topic or queue declared as ``name``."""
        base = f"{self.project}-{self.environment}-{name}"
        return f"{base}.fifo" if fifo else base

    def topic_name(self, topic: str) -> str:
        """The SNS topic name of ``topic``."""
        return self.resource_name(topic, fifo=self.topics[topic].fifo)

    def queue_name(self, queue: str) -> str:
        """The SQS queue name of ``queue``."""
        return self.resource_name(queue, fifo=self.queues[queue].fifo)

    def dlq_name(self, queue: str) -> str:
        """The SQS name of ``queue``'s dead-letter queue (FIFO if the queue is)."""
        return self.resource_name(f"{queue}-dlq", fifo=self.queues[queue].fifo)

    def ledger_job_types(self) -> list[str]:
        """The job types whose status is recorded in the job ledger, sorted."""
        return sorted(name for name, jt in self.job_types.items() if jt.ledger)

    # -- routing --------------------------------------------------------------------

    def job_types_of_queue(self, queue: str) -> list[str]:
        """Every job type ``queue`` can receive through its subscriptions, sorted."""
        received: set[str] = set()
        for sub in self.queues[queue].subscriptions:
            if sub.job_types is None:
                received.update(n for n, jt in self.job_types.items() if jt.topic == sub.topic)
            else:
                received.update(sub.job_types)
        return sorted(received)

    def queues_receiving(self, job_type: str) -> list[str]:
        """The queues a job of ``job_type`` is delivered to (its fan-out), sorted."""
        return sorted(q for q in self.queues if job_type in self.job_types_of_queue(q))

    def handler_for(self, queue: str, job_type: str) -> str | None:
        """The import path of the handler that runs ``job_type`` on ``queue``."""
        override = self.queues[queue].handlers.get(job_type)
        if override is not None:
            return override
        jt = self.job_types.get(job_type)
        return jt.handler if jt is not None else None

    def pool_of_queue(self, queue: str) -> str | None:
        """The pool that consumes ``queue``, if any."""
        return next((p for p, pool in self.pools.items() if queue in pool.queues), None)

    # -- retries --------------------------------------------------------------------

    def retry_for(self, queue: str, job_type: str) -> RetryPolicy:
        """The effective retry policy: defaults ← queue ← the queue's job-type override."""
        q = self.queues[queue]
        return self.defaults.retry.merged(q.retry).merged(q.retry.job_types.get(job_type))

    def max_receive_count(self, queue: str) -> int:
        """The DLQ ``maxReceiveCount`` of ``queue``: declared, or the largest budget + slack."""
        declared = self.queues[queue].dead_letter.max_receive_count
        if declared is not None:
            return declared
        budgets = [self.retry_for(queue, jt).max_attempts for jt in self.job_types_of_queue(queue)]
        budgets.append(self.defaults.retry.merged(self.queues[queue].retry).max_attempts)
        return min(max(budgets) + RECEIVE_COUNT_SLACK, MAX_RECEIVE_COUNT)
