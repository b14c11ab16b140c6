"""Looking up the AWS identity of declared queues and topics — never creating anything.

The producer API and the workers use these to find where to publish and what to
consume; a missing queue means ``conveyor infra apply`` has not been run.
"""

from __future__ import annotations

from infra import aws
from infra.provision.actual import queue_url_or_none
from infra.provision.desired import sns_arn
from infra.provision.errors import ProvisionError, aws_errors
from infra.topology import Topology


def _url(name: str) -> str:
    url = queue_url_or_none(aws.client("sqs"), name)
    if url is None:
        raise ProvisionError(
            f"queue {name} does not exist: run `conveyor infra apply` to create it"
        )
    return url


def _known(kind: str, names: dict[str, object], name: str) -> None:
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ProvisionError(f"unknown {kind} '{name}' (known: {known})")


def queue_url(topology: Topology, queue: str) -> str:
    """The URL of ``queue`` (its queues.yaml name), via GetQueueUrl."""
    _known("queue", dict(topology.queues), queue)
    return _url(topology.queue_name(queue))


def dlq_url(topology: Topology, queue: str) -> str:
    """The URL of the dead-letter queue of ``queue``, via GetQueueUrl."""
    _known("queue", dict(topology.queues), queue)
    return _url(topology.dlq_name(queue))


def topic_arn(topology: Topology, topic: str) -> str:
    """The ARN of ``topic`` (its queues.yaml name), computed from the account and region.

    No SNS call: the topic may not exist; publishing to it then fails with NotFound.
    """
    _known("topic", dict(topology.topics), topic)
    with aws_errors("finding the AWS account (sts:GetCallerIdentity)"):
        account = aws.account_id()
    return sns_arn(aws.region_name(), account, topology.topic_name(topic))
