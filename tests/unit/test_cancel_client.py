"""``Client.cancel`` and ``conveyor jobs cancel`` against a scripted API (httpx's MockTransport)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from producers.client import (
    Cancellation,
    Client,
    NotCancelledError,
    NotFoundError,
    Retry,
)

CANCELLED = {
    "id": "j/1",
    "type": "email.send",
    "state": "cancelled",
    "queues": {"notifications": "cancelled"},
    "detail": "cancelled: a worker that receives it deletes it without running it",
}


def _client(answers: list[tuple[int, dict[str, Any]]], seen: list[httpx.Request]) -> Client:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = answers.pop(0)
        headers = {"Retry-After": "0"} if status == 503 else {}
        return httpx.Response(status, json=body, headers=headers)

    sleep: Callable[[float], None] = lambda _s: None  # noqa: E731 - no waiting in tests
    return Client(
        "http://api",
        api_key="cvy_k",
        transport=httpx.MockTransport(handle),
        retry=Retry(max_attempts=3, max_wait_s=10),
        sleep=sleep,
    )


def test_cancel_is_a_delete_that_is_retried_after_a_503() -> None:
    seen: list[httpx.Request] = []
    client = _client([(503, {"detail": "the job ledger cannot be read"}), (200, CANCELLED)], seen)
    result = client.cancel("j/1")
    assert result == Cancellation(
        id="j/1",
        type="email.send",
        state="cancelled",
        queues={"notifications": "cancelled"},
        detail=CANCELLED["detail"],
        raw=CANCELLED,
    )
    assert [(r.method, r.url.raw_path) for r in seen] == [("DELETE", b"/v1/jobs/j%2F1")] * 2
    assert seen[0].headers["Authorization"] == "Bearer cvy_k"


def test_a_started_job_raises_not_cancelled_with_its_state() -> None:
    body = {"detail": "job 'j' was not cancelled: it is running", "id": "j", "state": "running"}
    with pytest.raises(NotCancelledError) as refused:
        _client([(409, body)], []).cancel("j")
    assert (refused.value.status_code, refused.value.state) == (409, "running")
    assert refused.value.usage  # a 4xx; `conveyor jobs cancel` exits 1 for it all the same
    with pytest.raises(NotFoundError):
        _client([(404, {"detail": "no job 'j' to cancel"})], []).cancel("j")
