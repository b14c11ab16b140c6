"""Deleting from a DLQ: chosen jobs by id, or everything (purge).

Deletion is by receive and ``DeleteMessageBatch`` rather than ``PurgeQueue``:
PurgeQueue may run once per 60 seconds per queue, takes up to a minute to finish
in the background, and cannot say how many messages it removed. Deleting what
was received gives an exact count and can run again at once. Like a redrive,
:func:`delete_jobs` deletes only the messages a previous peek selected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from infra.aws.errors import describe_aws_error
from infra.errors import AwsError
from ops.dlq.jobs import DeadJob
from ops.dlq.peek import DEFAULT_HOLD_S, Scan, batches

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


@dataclass
class DeleteResult:
    """What a delete or purge did."""

    deleted: int = 0
    failed: int = 0
    #: Selected but not received again (already gone, or held by another reader).
    missing: int = 0
    errors: list[str] = field(default_factory=list)
    aborted: str | None = None
    interrupted: bool = False


def _delete_batch(
    sqs: SQSClient, scan: Scan, url: str, jobs: list[DeadJob], result: DeleteResult
) -> None:
    for chunk in batches(jobs):
        entries = [
            {"Id": str(i), "ReceiptHandle": scan.receipt(job.message_id)}
            for i, job in enumerate(chunk)
        ]
        try:
            response = sqs.delete_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
        except (ClientError, BotoCoreError) as exc:
            result.failed += len(chunk)
            raise AwsError(f"deleting from the DLQ: {describe_aws_error(exc)}") from exc
        deleted = [chunk[int(s["Id"])].message_id for s in response.get("Successful", [])]
        scan.forget(deleted)
        result.deleted += len(deleted)
        for failure in response.get("Failed", []):
            result.failed += 1
            text = f"{failure.get('Code')}: {failure.get('Message')}"
            if text not in result.errors:
                result.errors.append(text)


def _run(
    sqs: SQSClient,
    url: str,
    wanted: set[str] | None,
    hold_s: float,
    on_progress: Callable[[DeleteResult], None],
) -> DeleteResult:
    result = DeleteResult()
    done: set[str] = set()
    try:
        with Scan(sqs, url, hold_s=hold_s) as scan:
            for page in scan.pages():
                mine = [j for j in page if wanted is None or j.message_id in wanted]
                _delete_batch(sqs, scan, url, mine, result)
                done.update(j.message_id for j in mine)
                on_progress(result)
                if wanted is not None and done >= wanted:
                    break
        result.errors += [p for p in scan.problems if p not in result.errors]
        if wanted is not None:
            result.missing = len(wanted - done)
    except AwsError as exc:
        result.aborted = str(exc)
    except KeyboardInterrupt:
        result.interrupted = True
    return result


def delete_jobs(
    sqs: SQSClient,
    url: str,
    selected: list[DeadJob],
    *,
    hold_s: float = DEFAULT_HOLD_S,
    on_progress: Callable[[DeleteResult], None] = lambda result: None,
) -> DeleteResult:
    """Delete exactly the ``selected`` messages (found by a previous peek) from the DLQ."""
    return _run(sqs, url, {job.message_id for job in selected}, hold_s, on_progress)


def purge(
    sqs: SQSClient,
    url: str,
    *,
    hold_s: float = DEFAULT_HOLD_S,
    on_progress: Callable[[DeleteResult], None] = lambda result: None,
) -> DeleteResult:
    """Delete every message that can be received from the DLQ (in-flight ones are not)."""
    return _run(sqs, url, None, hold_s, on_progress)
