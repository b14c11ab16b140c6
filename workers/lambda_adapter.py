"""Running Conveyor jobs in AWS Lambda: ``lambda_handler`` for an SQS event source.

The registered handlers run through the same :class:`~workers.runner.JobRunner` as
in a Celery worker, and outcomes are applied the same way, except the delete: a
success is left for Lambda to delete, a retry (visibility changed to the backoff
delay) is reported in ``batchItemFailures``, a dead letter is written to the DLQ and
left for Lambda to delete. Whatever cannot be settled is reported, never dropped;
a FIFO group stops at its first reported record. Deployment: docs/lambda.md.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from infra import aws, tracing
from infra.aws.lookup import dlq_url, queue_url
from infra.errors import AwsError
from infra.logs import configure_logging
from infra.settings import load_settings, running_in_aws_lambda
from infra.topology import Topology, check_imports, load_topology
from workers.aio.bridge import run_to_completion
from workers.batching import SqsBatcher
from workers.dead_letter import dead_letter_request
from workers.idempotency import job_hooks
from workers.intake import Refusal
from workers.runner import JobRunner, Outcome

log = structlog.stdlib.get_logger("conveyor.worker")

#: A Lambda record: the SQS message in Lambda's camelCase, plus its source.
Record = Mapping[str, Any]
#: What Lambda expects back: ``{"batchItemFailures": [{"itemIdentifier": id}, ...]}``.
BatchResponse = dict[str, list[dict[str, str]]]

#: Lambda's messageAttributes keys → SQS API (boto3) keys.
_ATTRIBUTE_KEYS = {
    "dataType": "DataType",
    "stringValue": "StringValue",
    "binaryValue": "BinaryValue",
    "stringListValues": "StringListValues",
    "binaryListValues": "BinaryListValues",
}


# -- records ----------------------------------------------------------------------


def queue_name_from_arn(arn: str) -> str:
    """The queue's AWS name from its ARN (``arn:aws:sqs:region:account:NAME``)."""
    return arn.rsplit(":", 1)[-1]


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for lambda_key, api_key in _ATTRIBUTE_KEYS.items():
        item = value.get(lambda_key)
        if item is None or item == []:
            continue  # Lambda sends empty lists and nulls; the API omits them
        if lambda_key == "binaryValue":
            item = base64.b64decode(item)  # Lambda base64-encodes; boto3 gives bytes
        elif lambda_key == "binaryListValues":
            item = [base64.b64decode(v) for v in item]
        converted[api_key] = item
    return converted


def record_to_message(record: Record) -> dict[str, Any]:
    """The SQS API shape of a Lambda SQS record, as ReceiveMessage (boto3) returns it.

    ``messageId``/``receiptHandle``/``body``/``md5OfBody`` become ``MessageId`` …,
    the system ``attributes`` keep their names, and each of ``messageAttributes``
    becomes ``{DataType, StringValue | BinaryValue (bytes), …}``.
    """
    message: dict[str, Any] = {
        "MessageId": record["messageId"],
        "ReceiptHandle": record.get("receiptHandle", ""),
        "Body": record.get("body") or "",
        "Attributes": {str(k): str(v) for k, v in (record.get("attributes") or {}).items()},
        "MessageAttributes": {
            str(name): _message_attribute(value)
            for name, value in (record.get("messageAttributes") or {}).items()
        },
    }
    if record.get("md5OfBody"):
        message["MD5OfBody"] = record["md5OfBody"]
    return message


def read_record(record: Record) -> tuple[dict[str, Any], Refusal | None]:
    """The SQS message of ``record``, and a refusal if the record could not be shaped.

    A record whose attributes cannot be converted (e.g. a binaryValue that is not
    base64) is still a message: it is dead-lettered as ``undecodable`` with its body
    unchanged, not reported back to Lambda to fail again on every receive.
    """
    try:
        return record_to_message(record), None
    except Exception as exc:  # noqa: BLE001 - a message is data, never a crash
        body = record.get("body")
        message: dict[str, Any] = {
            "MessageId": str(record.get("messageId") or ""),
            "ReceiptHandle": str(record.get("receiptHandle") or ""),
            "Body": body if isinstance(body, str) else "",
            "Attributes": {},
            "MessageAttributes": {},
        }
        return message, Refusal("undecodable", exc)


def fifo_group(record: Record) -> tuple[str, str] | None:
    """(queue ARN, message group) of a record from a FIFO queue; None for a standard queue.

    Standard queues may carry a MessageGroupId too (fair queues) without promising
    order, so only a ``.fifo`` source counts.
    """
    arn = str(record.get("eventSourceARN") or "")
    group = (record.get("attributes") or {}).get("MessageGroupId")
    if not arn.endswith(".fifo") or not group:
        return None
    return arn, str(group)


@dataclass
class BatchResult:
    """What became of the records of one batch."""

    #: messageIds to report in ``batchItemFailures``, in event order.
    failed: list[str] = field(default_factory=list)
    #: FIFO records that were not run because an earlier record of their group failed.
    skipped: list[Record] = field(default_factory=list)

    def response(self) -> BatchResponse:
        """The handler's return value."""
        return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed]}


def run_batch(records: Iterable[Record], process: Callable[[Record], bool]) -> BatchResult:
    """Process ``records`` in order; ``process`` returns False for a record to report.

    After a FIFO record is reported, the later records of its message group are
    reported without being processed, as Lambda requires to keep the group's order.
    """
    result = BatchResult()
    failed_groups: set[tuple[str, str]] = set()
    for record in records:
        group = fifo_group(record)
        if group is not None and group in failed_groups:
            result.skipped.append(record)
            result.failed.append(str(record.get("messageId") or ""))
            continue
        if not process(record):
            result.failed.append(str(record.get("messageId") or ""))
            if group is not None:
                failed_groups.add(group)
    return result


# -- the adapter --------------------------------------------------------------------


class LambdaAdapter:
    """Runs SQS event batches for the queues of one topology."""

    def __init__(self, topology: Topology, runner: JobRunner | None = None) -> None:
        self.topology = topology
        queues = list(topology.queues)
        # The same hooks as the Celery workers: log context, metrics, idempotency guard.
        self.runner = runner or JobRunner(
            topology,
            queues,
            hooks=job_hooks(topology, queues),
            awaiter=run_to_completion,  # async def handlers: a loop per record
        )
        self._queues = {topology.queue_name(q): q for q in topology.queues}
        self._urls: dict[tuple[str, str], str] = {}

    def handle(self, event: Mapping[str, Any]) -> BatchResponse:
        """Run every record of an SQS ``event``; the partial batch response."""
        records: list[Record] = list(event.get("Records") or [])
        result = run_batch(records, self._process)
        if result.skipped:
            self._release(result.skipped)
        log.info(
            "lambda.batch_done",
            records=len(records),
            failed=len(result.failed),
            skipped=len(result.skipped),
        )
        # Lambda freezes the process between invocations: export this batch's spans now.
        tracing.flush()
        return result.response()

    # -- one record ---------------------------------------------------------------------

    def _process(self, record: Record) -> bool:
        """Run one record and apply its outcome; False if Lambda must not delete it."""
        arn = str(record.get("eventSourceARN") or "")
        with structlog.contextvars.bound_contextvars(message_id=record.get("messageId")):
            queue = self._queues.get(queue_name_from_arn(arn))
            if queue is None:
                log.error(
                    "lambda.unknown_queue",
                    event_source_arn=arn,
                    known=sorted(self._queues),
                )
                return False
            try:
                message, refusal = read_record(record)
                outcome = self.runner.run(message, queue, refusal=refusal)
                return self._apply(outcome, message)
            except Exception:  # one broken record must not fail the whole batch
                log.exception("lambda.record_crashed", queue=queue)
                return False

    def _apply(self, outcome: Outcome, message: Mapping[str, Any]) -> bool:
        if outcome.kind == "succeeded":
            return True
        if outcome.kind == "retry":
            self._retry_later(outcome, message)
            return False
        return self._dead_letter(outcome, message)

    def _retry_later(self, outcome: Outcome, message: Mapping[str, Any]) -> None:
        try:
            aws.client("sqs").change_message_visibility(
                QueueUrl=self._url(outcome.queue),
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=outcome.delay_s,
            )
        except (ClientError, BotoCoreError, AwsError) as exc:
            # Still reported: the message reappears after its visibility timeout.
            log.warning(
                "sqs.change_visibility_failed",
                **outcome.log_fields(),
                timeout_s=outcome.delay_s,
                error=str(exc),
            )
            return
        log.info(
            "job.retry_scheduled",
            **outcome.log_fields(),
            delay_s=outcome.delay_s,
            error_type=outcome.error_type,
        )

    def _dead_letter(self, outcome: Outcome, message: Mapping[str, Any]) -> bool:
        failure = outcome.failure
        if failure is None:  # the runner always sets it; never delete without a record
            log.error("job.dead_letter_failed", **outcome.log_fields(), error="no failure record")
            return False
        try:
            request = dead_letter_request(
                message,
                failure,
                dlq_url=self._url(outcome.queue, dlq=True),
                fifo=self.topology.queues[outcome.queue].fifo,
            )
            aws.client("sqs").send_message(**request)
        except (ClientError, BotoCoreError, AwsError) as exc:
            log.error("job.dead_letter_failed", **outcome.log_fields(), error=str(exc))
            return False
        log.warning(
            "job.dead_lettered",
            **outcome.log_fields(),
            reason=failure.reason,
            error_type=failure.error_type,
            error=failure.error_message,
        )
        return True

    # -- skipped FIFO records --------------------------------------------------------

    def _release(self, records: list[Record]) -> None:
        """Make skipped records visible again now (batched); their group stays blocked."""
        batcher = SqsBatcher(lambda _url: aws.client("sqs"))
        for record in records:
            queue = self._queues.get(queue_name_from_arn(str(record.get("eventSourceARN") or "")))
            log.info("lambda.record_skipped", message_id=record.get("messageId"), queue=queue)
            if queue is None or not record.get("receiptHandle"):
                continue
            try:
                url = self._url(queue)
            except AwsError as exc:
                log.warning("sqs.change_visibility_failed", queue=queue, error=str(exc))
                continue
            batcher.change_visibility(url, str(record["receiptHandle"]), 0)
        batcher.flush()

    def _url(self, queue: str, *, dlq: bool = False) -> str:
        key = (queue, "dlq" if dlq else "queue")
        url = self._urls.get(key)
        if url is None:
            url = (dlq_url if dlq else queue_url)(self.topology, queue)
            self._urls[key] = url
        return url


# -- the entry point ------------------------------------------------------------------

_lock = threading.Lock()
_adapter: tuple[tuple[str, str | None], LambdaAdapter] | None = None


def current_adapter() -> LambdaAdapter:
    """The adapter for ``CONVEYOR_QUEUES_FILE``, built on first use (once per cold start).

    Building it loads the topology and imports every handler and payload model, so
    a broken deployment fails its first invocation (the batch goes back to the
    queue) instead of dead-lettering jobs one by one.
    """
    global _adapter  # noqa: PLW0603 - the per-container cache Lambda's model calls for
    settings = load_settings()
    where = settings.topology
    key = (str(where.queues_file), where.environment)
    with _lock:
        if _adapter is None or _adapter[0] != key:
            if running_in_aws_lambda() and not structlog.is_configured():
                # We own the process there; elsewhere (tests, a wrapping handler) the
                # host configures logging.
                configure_logging(settings.logging.format, settings.logging.level)
            topology = load_topology(where.queues_file, environment=where.environment)
            check_imports(topology, source=str(where.queues_file), handlers=True)
            _adapter = (key, LambdaAdapter(topology))
            log.info("lambda.ready", queues_file=key[0], queues=sorted(topology.queues))
        return _adapter[1]


def lambda_handler(event: Mapping[str, Any], context: Any) -> BatchResponse:
    """AWS Lambda entry point for an SQS event source mapping (see the module doc)."""
    request_id = getattr(context, "aws_request_id", None)
    with structlog.contextvars.bound_contextvars(aws_request_id=request_id):
        return current_adapter().handle(event)
