"""POST /v1/jobs in process (FastAPI's TestClient, moto's in-process mock), and PublishBatch.

A PublishBatch that fails as a whole, or lists entries in ``Failed``, or leaves
an entry out, is driven by botocore's own Stubber: moto never answers that way.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient

from infra import aws
from infra.envelope import decode, make_envelope
from infra.topology import Topology
from producers.app import create_app
from producers.batch import MAX_BATCH_JOBS, overall_status
from producers.enqueue import Outcome
from producers.publisher import Outgoing, Published, Publisher, PublishError, _chunks, _Entry
from tests.unit.test_api import ORDER, RESIZE, drain, provision, topology

__all__ = ["topology"]  # fixtures

EMAIL = {"to": "bob@example.com", "subject": "hi"}


@pytest.fixture
def client(topology: Topology, mocked_aws: None) -> TestClient:
    return TestClient(create_app(topology))


def _sns_calls() -> Counter[str]:
    return Counter({k: v for k, v in aws.request_counts().items() if k.startswith("sns.Publish")})


def test_a_mixed_batch_gets_one_result_per_job(client: TestClient, topology: Topology) -> None:
    urls = provision(topology)
    jobs = [
        {"type": "image.resize", "data": RESIZE},
        {"type": "image.resize", "data": {"width_px": -1}},
        {"type": "video.encode", "data": {}},
        {"type": "order.placed", "data": ORDER},
    ]
    response = client.post("/v1/jobs", json={"jobs": jobs})
    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (2, 2)
    ok, invalid, unknown, order = body["results"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert ok["status"] == 202
    assert ok["queues"] == ["images"]
    assert ok["status_url"] == f"/v1/jobs/{ok['id']}"
    assert invalid["status"] == 422
    assert "data.image_url: Field required" in invalid["error"]
    assert "data.width_px" in invalid["error"]
    assert unknown["status"] == 422
    assert unknown["error"].startswith("unknown job type 'video.encode'")
    assert order["queues"] == ["billing", "notifications"]
    assert [decode(m["Body"]).id for m in drain(urls["images"])] == [ok["id"]]
    assert [decode(m["Body"]).id for m in drain(urls["billing"])] == [order["id"]]
    assert [decode(m["Body"]).id for m in drain(urls["notifications"])] == [order["id"]]


def test_25_jobs_go_out_in_three_publish_batch_calls(
    client: TestClient, topology: Topology
) -> None:
    urls = provision(topology)
    before = _sns_calls()
    response = client.post("/v1/jobs", json={"jobs": [{"type": "email.send", "data": EMAIL}] * 25})
    assert response.status_code == 202
    assert response.json()["accepted"] == 25
    assert _sns_calls() - before == Counter({"sns.PublishBatch": 3})
    ids = {r["id"] for r in response.json()["results"]}
    assert len(ids) == 25
    assert {decode(m["Body"]).id for m in drain(urls["notifications"])} == ids


def test_one_batch_shares_the_request_trace(client: TestClient, topology: Topology) -> None:
    urls = provision(topology)
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = client.post(
        "/v1/jobs",
        json={"jobs": [{"type": "email.send", "data": EMAIL}] * 2},
        headers={"traceparent": trace},
    )
    assert response.status_code == 202
    assert {decode(m["Body"]).traceparent for m in drain(urls["notifications"])} == {trace}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"jobs": []}, "at least 1"),
        ({"jobs": [{"type": "email.send", "data": EMAIL}] * (MAX_BATCH_JOBS + 1)}, "at most 500"),
        ({"jobs": [{"data": EMAIL}]}, "Field required"),
        ({"jobs": [{"type": "email.send", "data": [1]}]}, "valid dictionary"),
        ({"items": []}, "Field required"),
    ],
)
def test_a_malformed_batch_is_422_as_a_whole(
    client: TestClient, body: dict[str, Any], fragment: str
) -> None:
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert fragment in response.text


def test_a_batch_with_no_valid_job_is_422(client: TestClient, topology: Topology) -> None:
    provision(topology)
    response = client.post("/v1/jobs", json={"jobs": [{"type": "email.send", "data": {}}] * 3})
    assert response.status_code == 422
    assert response.json()["accepted"] == 0
    assert [r["status"] for r in response.json()["results"]] == [422, 422, 422]


def test_a_batch_sns_cannot_take_is_503_with_retry_after(client: TestClient) -> None:
    # Nothing provisioned: the topic does not exist.
    response = client.post("/v1/jobs", json={"jobs": [{"type": "email.send", "data": EMAIL}] * 3})
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert all("conveyor infra apply" in r["error"] for r in response.json()["results"])


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([202, 202], 202),
        ([202, 422], 207),
        ([503, 503], 503),
        ([422, 403], 422),
        ([422, 503], 503),
        ([409], 409),
    ],
)
def test_overall_status(statuses: list[int], expected: int) -> None:
    outcomes = [Outcome(i, s, "t", "x") for i, s in enumerate(statuses)]
    assert overall_status(outcomes) == expected


def test_chunks_hold_at_most_10_entries_and_256_kib() -> None:
    def entry(i: int, size: int) -> _Entry:
        return _Entry(i, "", size, Outgoing(make_envelope("t", {})))

    small = [entry(i, 10) for i in range(23)]
    assert [len(c) for c in _chunks(small)] == [10, 10, 3]
    big = [entry(i, 100 * 1024) for i in range(5)]
    assert [len(c) for c in _chunks(big)] == [2, 2, 1]


# -- PublishBatch failures, from botocore's Stubber -------------------------------------------


@pytest.fixture
def stubbed(topology: Topology, mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("CONVEYOR_AWS_ACCOUNT_ID", "123456789012")
    publisher = Publisher(topology, threads=1)  # one thread: the stubbed answers come in order
    sns = publisher._sns()
    with Stubber(sns) as stubber:
        yield publisher, stubber
    publisher.close()


def _outgoing(n: int) -> list[Outgoing]:
    return [Outgoing(make_envelope("email.send", EMAIL)) for _ in range(n)]


def test_failed_and_missing_entries_are_not_accepted(stubbed: Any) -> None:
    publisher, stubber = stubbed
    stubber.add_response(
        "publish_batch",
        {
            "Successful": [{"Id": "0", "MessageId": "m-0"}],
            "Failed": [{"Id": "1", "Code": "InternalError", "SenderFault": False}],
        },
    )
    results = publisher.publish_many(_outgoing(3))
    assert isinstance(results[0], Published)
    assert results[0].message_id == "m-0"
    assert isinstance(results[1], PublishError)
    assert results[1].status_code == 503
    assert "InternalError" in results[1].detail
    assert isinstance(results[2], PublishError)  # not mentioned in the answer: not published
    assert "did not report" in results[2].detail


def test_a_failed_call_fails_exactly_its_entries(stubbed: Any) -> None:
    publisher, stubber = stubbed
    stubber.add_response(
        "publish_batch",
        {"Successful": [{"Id": str(i), "MessageId": f"m-{i}"} for i in range(10)], "Failed": []},
    )
    stubber.add_client_error("publish_batch", "InternalError", http_status_code=500)
    results = publisher.publish_many(_outgoing(20))
    assert [isinstance(r, Published) for r in results] == [True] * 10 + [False] * 10
    assert all(isinstance(r, PublishError) and r.status_code == 503 for r in results[10:])
