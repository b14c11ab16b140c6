"""Publishing a job's envelope to its SNS topic, and what a failure means to the caller.

Every way SNS (or the STS account lookup behind the topic ARN) can fail becomes a
:class:`PublishError` carrying the HTTP status the API answers with (503, or 413
for a message SNS cannot carry) and a ``Retry-After`` hint, so that no caller
ever answers 202 for a job that was not published, nor 500 for an AWS outage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from infra import aws
from infra.envelope import MAX_MESSAGE_BYTES, Envelope, encode
from infra.provision.desired import sns_arn
from infra.topology import Topology

#: ``Retry-After`` hints (seconds) by kind of failure.
RETRY_AFTER_UNAVAILABLE_S = 5
RETRY_AFTER_THROTTLED_S = 1
RETRY_AFTER_NOT_PROVISIONED_S = 30

#: Error codes AWS uses for "slow down" across services and SDK generations.
_THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ProvisionedThroughputExceededException",
        "SlowDown",
    }
)
#: SNS answers ``NotFound`` for a topic that does not exist (moto too).
_NOT_FOUND_CODES = frozenset({"NotFound", "NotFoundException", "ResourceNotFoundException"})


class PublishError(Exception):
    """The job was not published; ``status_code`` and ``retry_after_s`` tell the client why."""

    def __init__(
        self,
        detail: str,
        *,
        status_code: int = 503,
        retry_after_s: int | None = RETRY_AFTER_UNAVAILABLE_S,
        unexpected: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        #: Not an AWS failure we know: log it with its traceback.
        self.unexpected = unexpected


@dataclass(frozen=True)
class Published:
    """A job SNS accepted."""

    topic: str
    topic_arn: str
    message_id: str
    size_bytes: int


def _client_error(exc: ClientError, *, what: str) -> PublishError:
    # The response names the AWS error code only: AWS messages can carry ARNs and
    # account ids, which belong in our logs (the cause is logged), not in answers.
    code = str(exc.response.get("Error", {}).get("Code", "")) or "unknown"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLING_CODES or status == 429:
        return PublishError(
            f"{what} is throttling requests ({code})", retry_after_s=RETRY_AFTER_THROTTLED_S
        )
    if status >= 500:
        return PublishError(f"{what} failed with a server error ({code})")
    return PublishError(f"{what} refused the request ({code})")


def classify(exc: Exception, *, what: str = "SNS") -> PublishError:
    """The :class:`PublishError` for an exception raised while talking to ``what``."""
    if isinstance(exc, PublishError):
        return exc
    if isinstance(exc, BotoConnectionError | ReadTimeoutError):
        # EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError.
        return PublishError(f"{what} is unreachable ({type(exc).__name__})")
    if isinstance(exc, NoCredentialsError):
        return PublishError(f"no AWS credentials to call {what}")
    if isinstance(exc, ClientError):
        return _client_error(exc, what=what)
    if isinstance(exc, BotoCoreError):
        return PublishError(f"{what} request failed ({type(exc).__name__})")
    return PublishError(f"unexpected error talking to {what}", unexpected=True)


class Publisher:
    """Publishes envelopes to the topics of ``topology``'s job types (thread-safe)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._arns: dict[str, str] = {}
        self._lock = threading.Lock()

    def arn(self, topic: str) -> str:
        """The (cached) ARN of ``topic``; a failed account lookup raises :class:`PublishError`."""
        with self._lock:
            cached = self._arns.get(topic)
        if cached is not None:
            return cached
        try:
            # Computed, not looked up: one cached STS call, no SNS call per topic.
            found = sns_arn(aws.region_name(), aws.account_id(), self.topology.topic_name(topic))
        except Exception as exc:
            raise classify(exc, what="STS (the AWS account lookup)") from exc
        with self._lock:
            self._arns[topic] = found
        return found

    def _sns_error(self, exc: Exception, topic: str) -> PublishError:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        if code in _NOT_FOUND_CODES:
            return PublishError(
                f"topic '{self.topology.topic_name(topic)}' does not exist:"
                " run `conveyor infra apply`",
                retry_after_s=RETRY_AFTER_NOT_PROVISIONED_S,
            )
        return classify(exc)

    def publish(self, envelope: Envelope) -> Published:
        """Publish ``envelope`` to its job type's topic; return only once SNS accepted it."""
        body = encode(envelope)
        size = len(body.encode("utf-8"))
        if size > MAX_MESSAGE_BYTES:
            raise PublishError(
                f"the job's envelope is {size} bytes, above SNS's limit of"
                f" {MAX_MESSAGE_BYTES} bytes (send a smaller payload, or a reference to it)",
                status_code=413,
                retry_after_s=None,
            )
        topic = self.topology.job_types[envelope.type].topic
        arn = self.arn(topic)
        fifo = self.topology.topics[topic].fifo
        try:
            if fifo:
                # One group per job for now: no ordering between jobs, full parallelism.
                response = aws.client("sns").publish(
                    TopicArn=arn,
                    Message=body,
                    MessageGroupId=envelope.id,
                    MessageDeduplicationId=envelope.id,
                )
            else:
                response = aws.client("sns").publish(TopicArn=arn, Message=body)
        except Exception as exc:
            raise self._sns_error(exc, topic) from exc
        return Published(topic, arn, response["MessageId"], size)

    def check_topics(self) -> list[str]:
        """Ask SNS about every declared topic; return their names or raise :class:`PublishError`."""
        names = []
        for topic in self.topology.topics:
            arn = self.arn(topic)
            try:
                aws.client("sns").get_topic_attributes(TopicArn=arn)
            except Exception as exc:
                raise self._sns_error(exc, topic) from exc
            names.append(self.topology.topic_name(topic))
        return names
