"""Looking up declared queues and topics on AWS — never creating anything.

The producer API, the workers and the operator tools find where to publish, what
to consume and how deep a queue is through here; a missing queue means
``conveyor infra apply`` has not been run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from infra import aws
from infra.aws.errors import QUEUE_MISSING_CODES, aws_errors, error_code
from infra.aws.names import sns_arn
from infra.errors import MissingResourceError
from infra.topology import Topology

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

#: The queue attributes that count messages: visible, in flight, delayed.
DEPTH_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True)
class Depth:
    """Approximate message counts of a queue (SQS's attributes are eventually consistent)."""

    visible: int
    in_flight: int
    delayed: int = 0

    @property
    def total(self) -> int:
        """Every message in the queue, whether or not it can be received now."""
        return self.visible + self.in_flight + self.delayed

    @classmethod
    def from_attributes(cls, attributes: dict[str, str]) -> Depth:
        """The counts in a GetQueueAttributes answer (a missing or garbled count is 0)."""

        def count(key: str) -> int:
            try:
                return int(attributes.get(key, 0))
            except ValueError:
                return 0

        visible, in_flight, delayed = (count(k) for k in DEPTH_ATTRIBUTES)
        return cls(visible, in_flight, delayed)


def queue_url_or_none(sqs: SQSClient, name: str) -> str | None:
    """The URL of queue ``name`` (its AWS name), or ``None`` if it does not exist."""
    with aws_errors(f"looking up queue {name}"):
        try:
            return sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if error_code(exc) in QUEUE_MISSING_CODES:
                return None
            raise


def queue_url_by_name(name: str) -> str:
    """The URL of queue ``name`` (its AWS name); MissingResourceError if it does not exist."""
    url = queue_url_or_none(aws.client("sqs"), name)
    if url is None:
        raise MissingResourceError(
            f"queue {name} does not exist: run `conveyor infra apply` to create it"
        )
    return url


def _known(kind: str, names: dict[str, object], name: str) -> None:
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise MissingResourceError(f"unknown {kind} '{name}' (known: {known})")


def queue_url(topology: Topology, queue: str) -> str:
    """The URL of ``queue`` (its queues.yaml name), via GetQueueUrl."""
    _known("queue", dict(topology.queues), queue)
    return queue_url_by_name(topology.queue_name(queue))


def dlq_url(topology: Topology, queue: str) -> str:
    """The URL of the dead-letter queue of ``queue``, via GetQueueUrl."""
    _known("queue", dict(topology.queues), queue)
    return queue_url_by_name(topology.dlq_name(queue))


def topic_arn(topology: Topology, topic: str) -> str:
    """The ARN of ``topic`` (its queues.yaml name), computed from the account and region.

    No SNS call: the topic may not exist; publishing to it then fails with NotFound.
    """
    _known("topic", dict(topology.topics), topic)
    with aws_errors("finding the AWS account (sts:GetCallerIdentity)"):
        account = aws.account_id()
    return sns_arn(aws.region_name(), account, topology.topic_name(topic))


def queue_depth(sqs: SQSClient, url: str) -> Depth:
    """Approximate visible, in-flight and delayed counts of the queue at ``url``."""
    with aws_errors(f"reading the depth of {url.rsplit('/', 1)[-1]}"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=list(DEPTH_ATTRIBUTES),  # type: ignore[arg-type]
        ).get("Attributes", {})
    return Depth.from_attributes({str(k): v for k, v in attributes.items()})


def queue_arn(sqs: SQSClient, url: str) -> str:
    """The ARN of the queue at ``url`` (read from SQS, so it is right for any account)."""
    with aws_errors(f"reading the ARN of {url.rsplit('/', 1)[-1]}"):
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
