"""Publishing a job's envelope to its SNS topic, and what a failure means to the caller.

Every way SNS (or the STS account lookup behind the topic ARN) can fail becomes a
:class:`PublishError` carrying the HTTP status the API answers with (503, or 413
for a message SNS cannot carry) and a ``Retry-After`` hint, so that no caller
ever answers 202 for a job that was not published, nor 500 for an AWS outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from infra import aws, tracing
from infra.aws.errors import THROTTLING_CODES, error_code, http_status, is_not_found, is_throttled
from infra.aws.names import sns_arn
from infra.envelope import Envelope, encode
from infra.errors import AwsError
from infra.limits import SNS_MAX_MESSAGE_BYTES
from infra.settings import DEFAULT_PUBLISH_THREADS, SNS_CONNECT_TIMEOUT_S, SNS_READ_TIMEOUT_S
from infra.topology import Topology

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

#: ``Retry-After`` hints (seconds) by kind of failure.
RETRY_AFTER_UNAVAILABLE_S = 5
RETRY_AFTER_THROTTLED_S = 1
RETRY_AFTER_NOT_PROVISIONED_S = 30

#: PublishBatch takes at most this many entries per call.
MAX_BATCH_ENTRIES = 10


class PublishError(AwsError):
    """The job was not published; ``status_code`` and ``retry_after_s`` tell the client why."""

    def __init__(
        self,
        detail: str,
        *,
        status_code: int = 503,
        retry_after_s: int | None = RETRY_AFTER_UNAVAILABLE_S,
        unexpected: bool = False,
        uncertain: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        #: Not an AWS failure we know: log it with its traceback.
        self.unexpected = unexpected
        #: The request reached AWS but no answer came back (read timeout, connection
        #: closed): SNS may have published the job. A retry under the same idempotency
        #: key publishes it again under the same job id; without a key it is a new job.
        self.uncertain = uncertain


@dataclass(frozen=True)
class Published:
    """A job SNS accepted."""

    topic: str
    topic_arn: str
    message_id: str
    size_bytes: int


@dataclass(frozen=True)
class Outgoing:
    """An envelope to publish, with its FIFO ids (ignored on standard topics)."""

    envelope: Envelope
    message_group_id: str | None = None
    deduplication_id: str | None = None
    #: ``encode(envelope)`` when the caller has it already: the envelope is encoded once.
    body: str | None = None


@dataclass(frozen=True)
class _Entry:
    index: int
    body: str
    size_bytes: int
    item: Outgoing


def _client_error(exc: ClientError, *, what: str) -> PublishError:
    # The response names the AWS error code only: AWS messages can carry ARNs and
    # account ids, which belong in our logs (the cause is logged), not in answers.
    code = error_code(exc) or "unknown"
    if is_throttled(exc):
        return PublishError(
            f"{what} is throttling requests ({code})", retry_after_s=RETRY_AFTER_THROTTLED_S
        )
    if http_status(exc) >= 500:
        return PublishError(f"{what} failed with a server error ({code})")
    return PublishError(f"{what} refused the request ({code})")


def _connection_error(exc: Exception, *, what: str) -> PublishError:
    if isinstance(exc, ConnectionClosedError | ReadTimeoutError):
        # The request was sent and no answer came back: AWS may have acted on it.
        return PublishError(
            f"{what} did not answer ({type(exc).__name__}): the job may have been published",
            uncertain=True,
        )
    # EndpointConnectionError, ConnectTimeoutError: nothing reached AWS.
    return PublishError(f"{what} is unreachable ({type(exc).__name__})")


def classify(exc: Exception, *, what: str = "SNS") -> PublishError:
    """The :class:`PublishError` for an exception raised while talking to ``what``."""
    if isinstance(exc, PublishError):
        return exc
    # ConnectionClosedError is an HTTPClientError, not a botocore ConnectionError.
    if isinstance(exc, BotoConnectionError | ReadTimeoutError | ConnectionClosedError):
        return _connection_error(exc, what=what)
    if isinstance(exc, NoCredentialsError):
        return PublishError(f"no AWS credentials to call {what}")
    if isinstance(exc, ClientError):
        return _client_error(exc, what=what)
    if isinstance(exc, BotoCoreError):
        return PublishError(f"{what} request failed ({type(exc).__name__})")
    return PublishError(f"unexpected error talking to {what}", unexpected=True)


class Publisher:
    """Publishes envelopes to the topics of ``topology``'s job types (thread-safe)."""

    def __init__(
        self,
        topology: Topology,
        *,
        threads: int = DEFAULT_PUBLISH_THREADS,
        connect_timeout_s: float = SNS_CONNECT_TIMEOUT_S,
        read_timeout_s: float = SNS_READ_TIMEOUT_S,
    ) -> None:
        self.topology = topology
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._arns: dict[str, str] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="publish")
        #: Seconds each SNS call took (Publish or PublishBatch), for metrics; None: no hook.
        self.on_call: Callable[[float], None] | None = None

    def _sns(self) -> SNSClient:
        connect, read = self._timeouts
        return aws.client("sns", connect_timeout_s=connect, read_timeout_s=read)

    def close(self) -> None:
        """Stop the publishing threads (pending calls finish)."""
        self._pool.shutdown(wait=True)

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
        # SNS answers NotFound for a topic that does not exist (moto too).
        if is_not_found(exc):
            # Named as queues.yaml declares it (as the API's documentation does): answers
            # carry no AWS resource name; the log has the error, with the ARN.
            return PublishError(
                f"topic '{topic}' (queues.yaml) does not exist: run `conveyor infra apply`",
                retry_after_s=RETRY_AFTER_NOT_PROVISIONED_S,
            )
        return classify(exc)

    def _encode(self, index: int, item: Outgoing) -> _Entry:
        body = item.body if item.body is not None else encode(item.envelope)
        size = len(body.encode("utf-8"))
        if size > SNS_MAX_MESSAGE_BYTES:
            raise PublishError(
                f"the job's envelope is {size} bytes, above SNS's limit of"
                f" {SNS_MAX_MESSAGE_BYTES} bytes (send a smaller payload, or a reference to it)",
                status_code=413,
                retry_after_s=None,
            )
        return _Entry(index, body, size, item)

    def _fifo_ids(self, item: Outgoing) -> dict[str, str]:
        topic = self.topology.job_types[item.envelope.type].topic
        if not self.topology.topics[topic].fifo:
            return {}
        # Without a declared group, one group per job: no ordering between jobs, full
        # parallelism. Without a deduplication id, the job id (no deduplication).
        return {
            "MessageGroupId": item.message_group_id or item.envelope.id,
            "MessageDeduplicationId": item.deduplication_id or item.envelope.id,
        }

    def _timed(self, call: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return call(**kwargs)
        finally:
            if self.on_call is not None:
                self.on_call(time.perf_counter() - started)

    def publish(
        self,
        envelope: Envelope,
        *,
        message_group_id: str | None = None,
        deduplication_id: str | None = None,
        body: str | None = None,
    ) -> Published:
        """Publish ``envelope`` to its job type's topic; return only once SNS accepted it.

        The FIFO ids are used on FIFO topics only (default: the job id for both).
        ``body``: ``encode(envelope)``, when the caller has it already.
        """
        entry = self._encode(0, Outgoing(envelope, message_group_id, deduplication_id, body))
        topic = self.topology.job_types[envelope.type].topic
        arn = self.arn(topic)
        with tracing.publish_span(
            self.topology.topic_name(topic),
            arn,
            batch_size=1,
            fallback_traceparent=envelope.traceparent,
        ) as span:
            if span.traceparent() is not None:
                # The envelope names the publish span as its parent (same size as before).
                entry = _retraced(entry, span)
            try:
                response = self._timed(
                    self._sns().publish,
                    TopicArn=arn,
                    Message=entry.body,
                    **self._fifo_ids(entry.item),
                )
            except Exception as exc:
                error = self._sns_error(exc, topic)
                span.fail(error.detail)
                raise error from exc
            span.set(messaging__message__id=response["MessageId"])
        return Published(topic, arn, response["MessageId"], entry.size_bytes)

    def publish_many(self, items: Sequence[Outgoing]) -> list[Published | PublishError]:
        """Publish every item; one result per item, in order, never an exception.

        One item goes out with Publish; more with PublishBatch, in calls of at most
        10 entries and 256 KiB (SNS limits both), run in parallel. An entry SNS lists
        in ``Failed``, or does not mention at all, is a :class:`PublishError`; so is
        every entry of a call that raised: nothing unpublished is reported accepted.
        """
        if len(items) == 1:
            try:
                item = items[0]
                return [
                    self.publish(
                        item.envelope,
                        message_group_id=item.message_group_id,
                        deduplication_id=item.deduplication_id,
                        body=item.body,
                    )
                ]
            except PublishError as exc:
                return [exc]
            except Exception as exc:  # noqa: BLE001 - reported per item, never raised
                return [classify(exc)]
        results: list[Published | PublishError | None] = [None] * len(items)
        by_topic: dict[str, list[_Entry]] = {}
        for index, item in enumerate(items):
            try:
                entry = self._encode(index, item)
            except PublishError as exc:
                results[index] = exc
                continue
            by_topic.setdefault(self.topology.job_types[item.envelope.type].topic, []).append(entry)
        calls: list[tuple[str, str, list[_Entry]]] = []
        for topic, entries in by_topic.items():
            try:
                arn = self.arn(topic)
            except PublishError as exc:
                for entry in entries:
                    results[entry.index] = exc
                continue
            calls.extend((topic, arn, chunk) for chunk in _chunks(entries))
        if len(calls) == 1:
            outcomes = [self._publish_chunk(*calls[0])]
        else:
            # The pool's threads do not inherit the request's trace context: carry it.
            ctx = tracing.capture()

            def publish_chunk(call: tuple[str, str, list[_Entry]]) -> dict[int, Any]:
                with tracing.attached(ctx):
                    return self._publish_chunk(*call)

            outcomes = list(self._pool.map(publish_chunk, calls))
        for outcome in outcomes:
            for index, result in outcome.items():
                results[index] = result
        return [
            r if r is not None else PublishError("SNS did not report on this job") for r in results
        ]

    def _publish_chunk(
        self, topic: str, arn: str, entries: list[_Entry]
    ) -> dict[int, Published | PublishError]:
        with tracing.publish_span(
            self.topology.topic_name(topic),
            arn,
            batch_size=len(entries),
            fallback_traceparent=entries[0].item.envelope.traceparent,
        ) as span:
            if span.traceparent() is not None:
                # Each envelope names the publish span as its parent (same length: same size).
                entries = [_retraced(e, span) for e in entries]
            out = self._send_chunk(topic, arn, entries)
            failed = sum(1 for r in out.values() if isinstance(r, PublishError))
            if failed or len(out) < len(entries):
                span.fail(f"{len(entries) - len(out) + failed} of {len(entries)} not published")
            if len(entries) == 1 and isinstance(published := out.get(entries[0].index), Published):
                span.set(messaging__message__id=published.message_id)
            return out

    def _send_chunk(
        self, topic: str, arn: str, entries: list[_Entry]
    ) -> dict[int, Published | PublishError]:
        request = [
            {"Id": str(e.index), "Message": e.body, **self._fifo_ids(e.item)} for e in entries
        ]
        try:
            response = self._timed(
                self._sns().publish_batch, TopicArn=arn, PublishBatchRequestEntries=request
            )
        except Exception as exc:  # noqa: BLE001 - the whole call failed: every entry did
            error = self._sns_error(exc, topic)
            return {e.index: error for e in entries}
        by_id = {str(e.index): e for e in entries}
        out: dict[int, Published | PublishError] = {}
        for ok in response.get("Successful", []):
            entry = by_id.get(str(ok.get("Id")))
            if entry is not None and ok.get("MessageId"):
                out[entry.index] = Published(topic, arn, str(ok["MessageId"]), entry.size_bytes)
        for failed in response.get("Failed", []):
            entry = by_id.get(str(failed.get("Id")))
            if entry is not None:
                code = str(failed.get("Code") or "unknown")
                retry = (
                    RETRY_AFTER_THROTTLED_S
                    if code in THROTTLING_CODES
                    else RETRY_AFTER_UNAVAILABLE_S
                )
                out[entry.index] = PublishError(
                    f"SNS refused the job ({code})", retry_after_s=retry
                )
        # moto (5.2.5) drops an entry whose publish raised anything but InvalidParameterValue
        # from both lists; AWS should never do so. Either way an unmentioned entry is not
        # published, and publish_many reports it as such.
        return out

    def check_topics(self) -> list[str]:
        """Ask SNS about every declared topic; return their names or raise :class:`PublishError`."""
        names = []
        for topic in self.topology.topics:
            arn = self.arn(topic)
            try:
                self._sns().get_topic_attributes(TopicArn=arn)
            except Exception as exc:
                raise self._sns_error(exc, topic) from exc
            names.append(self.topology.topic_name(topic))
        return names


def _traced(envelope: Envelope, span: tracing.SpanHandle) -> Envelope:
    """``envelope`` naming ``span`` as its ``traceparent`` (unchanged when tracing is off)."""
    traceparent = span.traceparent()
    if traceparent is None or traceparent == envelope.traceparent:
        return envelope
    return envelope.model_copy(update={"traceparent": traceparent})


def _retraced(entry: _Entry, span: tracing.SpanHandle) -> _Entry:
    """``entry`` whose envelope names ``span`` as its parent: encoded again only if it changed."""
    envelope = _traced(entry.item.envelope, span)
    if envelope is entry.item.envelope:
        return entry
    item = replace(entry.item, envelope=envelope, body=None)
    return replace(entry, body=encode(envelope), item=item)


def _chunks(entries: list[_Entry]) -> list[list[_Entry]]:
    """PublishBatch calls: at most 10 entries and 256 KiB of messages each, in order."""
    chunks: list[list[_Entry]] = []
    current: list[_Entry] = []
    size = 0
    for entry in entries:
        if current and (
            len(current) == MAX_BATCH_ENTRIES or size + entry.size_bytes > SNS_MAX_MESSAGE_BYTES
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry.size_bytes
    if current:
        chunks.append(current)
    return chunks
