"""A redrive finds every selected job even when one pass of the DLQ cannot see one."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra import aws
from ops.dlq.peek import Scan, peek
from ops.dlq.queues import TargetQueue
from ops.dlq.redrive import redrive

pytestmark = pytest.mark.usefixtures("mocked_aws")

#: The module (``ops.dlq`` exports its function under the same name).
redrive_module = importlib.import_module("ops.dlq.redrive")


class _FirstPassMissesOne(Scan):
    """A real scan, except that the first one never hands out ``hidden`` (it still holds
    and releases it): what a FIFO group locked by another held message looks like."""

    hidden: str = ""
    scans = 0

    def pages(self) -> Iterator[Any]:
        type(self).scans += 1
        first = type(self).scans == 1
        for page in super().pages():
            yield [job for job in page if not (first and job.message_id == self.hidden)]


def _redrive_with(monkeypatch: pytest.MonkeyPatch, passes: int) -> tuple[Any, list[str]]:
    sqs = aws.client("sqs")
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    work = sqs.create_queue(QueueName="work")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"label": f"job-{i}"}))
    selected = peek(sqs, dlq).jobs
    assert len(selected) == 3
    _FirstPassMissesOne.hidden = selected[1].message_id
    _FirstPassMissesOne.scans = 0
    monkeypatch.setattr(redrive_module, "Scan", _FirstPassMissesOne)
    monkeypatch.setattr(redrive_module, "SCAN_PASSES", passes)
    result = redrive(sqs, dlq, TargetQueue("work", "work", fifo=False), work, selected, hold_s=5)
    moved = sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=10)["Messages"]
    return result, sorted(json.loads(m["Body"])["label"] for m in moved)


def test_a_job_one_pass_cannot_see_is_moved_by_the_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result, moved = _redrive_with(monkeypatch, passes=redrive_module.SCAN_PASSES)
    assert (result.moved, result.missing) == (3, 0)
    assert moved == ["job-0", "job-1", "job-2"]
    assert _FirstPassMissesOne.scans == 2


def test_with_one_pass_that_job_was_reported_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the second pass fixes: the same run with one pass leaves it behind.
    result, moved = _redrive_with(monkeypatch, passes=1)
    assert (result.moved, result.missing) == (2, 1)
    assert len(moved) == 2
