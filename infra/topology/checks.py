"""Static checks that relate one part of queues.yaml to another.

Each check returns problems rather than raising, so one run reports all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from pydantic import ValidationError

from infra.durations import format_duration_s
from infra.topology.errors import Problem
from infra.topology.model import MAX_QUEUE_NAME_LEN, Topology


def _known(names: object) -> str:
    return ", ".join(sorted(names)) if isinstance(names, dict) and names else "none"


def _topics_exist(t: Topology) -> Iterator[Problem]:
    for name, jt in t.job_types.items():
        if jt.topic not in t.topics:
            yield Problem(
                f"job_types.{name}.topic",
                f"unknown topic '{jt.topic}' (known: {_known(t.topics)})",
            )
    for qname, q in t.queues.items():
        for i, sub in enumerate(q.subscriptions):
            if sub.topic not in t.topics:
                yield Problem(
                    f"queues.{qname}.subscriptions[{i}].topic",
                    f"unknown topic '{sub.topic}' (known: {_known(t.topics)})",
                )


def _subscriptions_are_sound(t: Topology) -> Iterator[Problem]:
    for qname, q in t.queues.items():
        if not q.subscriptions:
            yield Problem(f"queues.{qname}.subscriptions", "the queue subscribes to no topic")
        seen: set[str] = set()
        for i, sub in enumerate(q.subscriptions):
            path = f"queues.{qname}.subscriptions[{i}]"
            if sub.topic in seen:
                yield Problem(
                    f"{path}.topic",
                    f"a second subscription to topic '{sub.topic}' (SNS allows one per"
                    " topic and queue: list all job types in one)",
                )
            seen.add(sub.topic)
            topic = t.topics.get(sub.topic)
            if topic is not None and topic.fifo and not q.fifo:
                yield Problem(
                    f"{path}.topic",
                    f"FIFO topic '{sub.topic}' cannot deliver to standard queue '{qname}'"
                    " (set fifo: true on the queue)",
                )
            if topic is not None and not topic.fifo and q.fifo:
                yield Problem(
                    f"{path}.topic",
                    f"standard topic '{sub.topic}' cannot deliver to FIFO queue '{qname}'",
                )
            if sub.job_types == []:
                yield Problem(
                    f"{path}.job_types",
                    "lists no job types (omit job_types to receive every job type of the topic)",
                )
            for j, jt_name in enumerate(sub.job_types or []):
                jt = t.job_types.get(jt_name)
                if jt is None:
                    yield Problem(
                        f"{path}.job_types[{j}]",
                        f"unknown job type '{jt_name}' (known: {_known(t.job_types)})",
                    )
                elif jt.topic != sub.topic:
                    yield Problem(
                        f"{path}.job_types[{j}]",
                        f"job type '{jt_name}' is published to topic '{jt.topic}',"
                        f" not '{sub.topic}'",
                    )


def _every_job_type_is_received(t: Topology) -> Iterator[Problem]:
    for name, jt in t.job_types.items():
        if jt.topic in t.topics and not t.queues_receiving(name):
            yield Problem(
                f"job_types.{name}",
                f"no queue receives job type '{name}' (subscribe a queue to topic"
                f" '{jt.topic}' for it)",
            )


def _every_received_job_type_has_a_handler(t: Topology) -> Iterator[Problem]:
    for qname, q in t.queues.items():
        receivable = t.job_types_of_queue(qname)
        for jt_name in receivable:
            if jt_name in t.job_types and t.handler_for(qname, jt_name) is None:
                yield Problem(
                    f"queues.{qname}",
                    f"queue '{qname}' can receive job type '{jt_name}' but no handler is"
                    f" declared (set job_types.{jt_name}.handler or"
                    f" queues.{qname}.handlers.{jt_name})",
                )
        for jt_name in q.handlers:
            if jt_name not in receivable:
                yield Problem(
                    f"queues.{qname}.handlers.{jt_name}",
                    f"queue '{qname}' does not receive job type '{jt_name}'",
                )
        for jt_name in q.retry.job_types:
            if jt_name not in receivable:
                yield Problem(
                    f"queues.{qname}.retry.job_types.{jt_name}",
                    f"queue '{qname}' does not receive job type '{jt_name}'",
                )


def _attempts_below_receive_count(t: Topology) -> Iterator[Problem]:
    for qname, q in t.queues.items():
        declared = q.dead_letter.max_receive_count
        if declared is None:
            continue  # derived from the budgets, so always above them
        budgets: list[tuple[str, int]] = [
            (
                f"queues.{qname}.retry.max_attempts"
                if q.retry.max_attempts is not None
                else "defaults.retry.max_attempts",
                t.defaults.retry.merged(q.retry).max_attempts,
            )
        ]
        budgets += [
            (f"queues.{qname}.retry.job_types.{jt}.max_attempts", o.max_attempts)
            for jt, o in q.retry.job_types.items()
            if o.max_attempts is not None
        ]
        for path, budget in budgets:
            if budget >= declared:
                yield Problem(
                    path,
                    f"max_attempts ({budget}) must be below queues.{qname}.dead_letter"
                    f".max_receive_count ({declared}): SQS would dead-letter the job"
                    " before its last attempt",
                )


def _merged_backoffs_are_valid(t: Topology) -> Iterator[Problem]:
    # Overrides are partial, so base_s <= max_s can only be checked once merged.
    for qname, q in t.queues.items():
        levels: list[tuple[str, str | None]] = [(f"queues.{qname}.retry.backoff", None)]
        levels += [(f"queues.{qname}.retry.job_types.{jt}.backoff", jt) for jt in q.retry.job_types]
        for path, jt in levels:
            try:
                if jt is None:
                    t.defaults.retry.merged(q.retry)
                else:
                    t.retry_for(qname, jt)
            except ValidationError as exc:
                message = exc.errors()[0]["msg"].removeprefix("Value error, ")
                yield Problem(path, message)
                break  # job-type levels inherit the same conflict


def _pools_are_sound(t: Topology) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for pname, pool in t.pools.items():
        for i, qname in enumerate(pool.queues):
            path = f"pools.{pname}.queues[{i}]"
            if qname not in t.queues:
                yield Problem(path, f"unknown queue '{qname}' (known: {_known(t.queues)})")
            elif qname in owner:
                yield Problem(path, f"queue '{qname}' is already consumed by pool '{owner[qname]}'")
            else:
                owner[qname] = pname


def _autoscale_is_sound(t: Topology) -> Iterator[Problem]:
    for pname, pool in t.pools.items():
        auto = pool.autoscale
        if auto is None:
            continue
        path = f"pools.{pname}.autoscale"
        if pool.replicas.min == pool.replicas.max:
            yield Problem(
                path,
                f"autoscale has no room: replicas.min and replicas.max are both"
                f" {pool.replicas.min} (widen the bounds or remove autoscale)",
            )
        if auto.scale_in_cooldown_s < auto.interval_s:
            yield Problem(
                f"{path}.scale_in_cooldown_s",
                f"scale_in_cooldown_s ({auto.scale_in_cooldown_s:g}) must not be below"
                f" interval_s ({auto.interval_s:g}): the backlog is sampled once per"
                " interval, so it cannot be seen staying low for a shorter time",
            )


#: Below this a worker's resident memory (RSS, shared pages included) is already
#: passed at start-up: every job would recycle its process.
MIN_MEMORY_PER_CHILD_MB = 128


def _recycling_is_sound(t: Topology) -> Iterator[Problem]:
    for pname, pool in t.pools.items():
        path = f"pools.{pname}"
        limit_mb = pool.max_memory_per_child_mb
        if limit_mb is not None and limit_mb < MIN_MEMORY_PER_CHILD_MB:
            yield Problem(
                f"{path}.max_memory_per_child_mb",
                f"{limit_mb} MiB is below {MIN_MEMORY_PER_CHILD_MB} MiB, about what a worker"
                " process holds at start-up: every job would recycle it",
            )
        jobs = pool.max_jobs_per_child
        if pool.worker_pool != "prefork" and jobs is not None and jobs < pool.concurrency:
            yield Problem(
                f"{path}.max_jobs_per_child",
                f"{jobs} is below concurrency ({pool.concurrency}): a {pool.worker_pool} pool"
                " recycles the whole node, which would restart before it used its slots",
            )


def _names_fit_aws(t: Topology) -> Iterator[Problem]:
    for qname in t.queues:
        dlq = t.dlq_name(qname)
        if len(dlq) > MAX_QUEUE_NAME_LEN:
            yield Problem(
                f"queues.{qname}",
                f"the dead-letter queue name '{dlq}' is longer than SQS's"
                f" {MAX_QUEUE_NAME_LEN} characters (shorten project, environment or queue name)",
            )


def _retentions(t: Topology) -> Iterator[tuple[str, float]]:
    """Every queue and DLQ retention as (key, seconds)."""
    for qname, q in t.queues.items():
        yield f"queues.{qname}.retention_s", q.retention_s
        yield f"queues.{qname}.dead_letter.retention_s", q.dead_letter.retention_s


def _payloads_are_sound(t: Topology) -> Iterator[Problem]:
    p = t.payloads
    if p.max_bytes < p.claim_check_threshold_bytes:
        yield Problem(
            "payloads.max_bytes",
            f"max_bytes ({p.max_bytes}) must not be below claim_check_threshold_bytes"
            f" ({p.claim_check_threshold_bytes})",
        )
    if p.expiry_s % 86400:
        yield Problem(
            "payloads.expiry_s",
            f"{format_duration_s(p.expiry_s)} is not a whole number of days"
            " (S3 lifecycle rules expire objects after whole days)",
        )
    key, longest_s = max(_retentions(t), key=lambda kv: kv[1])
    if p.expiry_s < longest_s:
        yield Problem(
            "payloads.expiry_s",
            f"{format_duration_s(p.expiry_s)} is shorter than {key}"
            f" ({format_duration_s(longest_s)}): a large payload could expire while its"
            " job still waits in the queue or its DLQ",
        )


def _ledger_outlasts_queues(t: Topology) -> Iterator[Problem]:
    recorded = set(t.ledger_job_types())
    # The queues that run recorded job types: a job waits there at most retention_s.
    retentions = [
        (f"queues.{qname}.retention_s", q.retention_s)
        for qname, q in t.queues.items()
        if recorded & set(t.job_types_of_queue(qname))
    ]
    if not retentions:
        return
    key, longest_s = max(retentions, key=lambda kv: kv[1])
    if t.ledger.retention_s < longest_s:
        yield Problem(
            "ledger.retention_s",
            f"{format_duration_s(t.ledger.retention_s)} is shorter than {key}"
            f" ({format_duration_s(longest_s)}): a job's status could be forgotten before"
            " it runs",
        )


def _message_groups_on_fifo_topics(t: Topology) -> Iterator[Problem]:
    for name, jt in t.job_types.items():
        topic = t.topics.get(jt.topic)
        if jt.message_group_field is not None and topic is not None and not topic.fifo:
            yield Problem(
                f"job_types.{name}.message_group_field",
                f"topic '{jt.topic}' is not FIFO: message groups order FIFO topics only"
                " (set fifo: true on the topic, or remove message_group_field)",
            )


#: An IAM principal a topic policy can name: an account (``root``), a role or a user.
#: Wildcards are not principals; assumed-role sessions are named by their role.
PUBLISHER_ARN = re.compile(
    r"^arn:aws(-cn|-us-gov)?:iam::\d{12}:(root|(role|user)(/[\w+=,.@-]+)*/[\w+=,.@-]{1,128})$"
)


def _publishers_are_principals(t: Topology) -> Iterator[Problem]:
    for name, topic in t.topics.items():
        seen: set[str] = set()
        for i, arn in enumerate(topic.publishers):
            path = f"topics.{name}.publishers[{i}]"
            if not PUBLISHER_ARN.fullmatch(arn):
                yield Problem(
                    path,
                    f"'{arn}' is not an IAM principal ARN (arn:aws:iam::<12-digit account>:"
                    "role/NAME, …:user/NAME or …:root; no wildcards)",
                )
            elif arn in seen:
                yield Problem(path, f"'{arn}' is listed twice")
            seen.add(arn)


def _schedules_are_sound(t: Topology) -> Iterator[Problem]:
    for name, schedule in t.schedules.items():
        if schedule.job_type not in t.job_types:
            yield Problem(
                f"schedules.{name}.job_type",
                f"unknown job type '{schedule.job_type}' (known: {_known(t.job_types)})",
            )


CHECKS: tuple[Callable[[Topology], Iterator[Problem]], ...] = (
    _topics_exist,
    _subscriptions_are_sound,
    _every_job_type_is_received,
    _every_received_job_type_has_a_handler,
    _attempts_below_receive_count,
    _pools_are_sound,
    _autoscale_is_sound,
    _recycling_is_sound,
    _names_fit_aws,
    _payloads_are_sound,
    _ledger_outlasts_queues,
    _message_groups_on_fifo_topics,
    _publishers_are_principals,
    _schedules_are_sound,
)


def check_topology(t: Topology) -> list[Problem]:
    """Every cross-reference problem in ``t`` (empty when the topology is sound)."""
    # Retry policies are merged by the other checks; an unmergeable one must be
    # reported first, on its own, rather than crash them.
    problems = list(_merged_backoffs_are_valid(t))
    if problems:
        return problems
    return [problem for check in CHECKS for problem in check(t)]
