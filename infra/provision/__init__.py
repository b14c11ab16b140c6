"""Idempotent provisioning of queues.yaml on SNS/SQS (and DynamoDB): plan, apply, destroy.

``plan(topology)`` shows what ``apply(topology)`` would create, update or delete
(topics, queues, DLQs, subscriptions, and the idempotency guard's DynamoDB table
when a job type enables it); ``apply`` does it and returns what it changed (an
empty plan when all is up to date); ``destroy`` deletes what the topology
declares. ``queue_url``, ``dlq_url`` and ``topic_arn`` look resources up for the
producers and workers without creating anything.
"""

from infra.provision.apply import apply, destroy, plan, plan_destroy
from infra.provision.desired import DesiredState, desired_state
from infra.provision.errors import ProvisionError
from infra.provision.lookup import dlq_url, queue_url, topic_arn
from infra.provision.plan import Change, Plan

__all__ = [
    "Change",
    "DesiredState",
    "Plan",
    "ProvisionError",
    "apply",
    "desired_state",
    "destroy",
    "dlq_url",
    "plan",
    "plan_destroy",
    "queue_url",
    "topic_arn",
]
