"""Idempotent provisioning of queues.yaml on SNS/SQS, DynamoDB and S3: plan, apply, destroy.

``plan(topology)`` shows what ``apply(topology)`` would create, update or delete
(topics, queues, DLQs, subscriptions; the DynamoDB tables of the idempotency guard
and of the job ledger when a job type enables them, and of the producer API's
idempotency keys; the claim-check S3 bucket); ``apply`` does it and returns what
it changed (an empty plan when all is up to date); ``destroy`` deletes what the
topology declares. Looking resources up without creating anything is
:mod:`infra.aws.lookup`'s.
"""

from infra.provision.apply import apply, destroy, plan, plan_destroy
from infra.provision.desired import DesiredState, desired_state
from infra.provision.plan import Change, Plan

__all__ = [
    "Change",
    "DesiredState",
    "Plan",
    "apply",
    "desired_state",
    "destroy",
    "plan",
    "plan_destroy",
]
