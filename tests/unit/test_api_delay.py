"""Delayed jobs in the producer API (moto in process): validation, storage, the ledger's answer.

``POST /v1/jobs/{type}`` takes ``delay_s`` / ``not_before`` as query parameters;
``POST /v1/jobs`` as fields of each job. Stored jobs are read back from the timer
table; nothing is published to SNS before its due time.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra import aws
from infra.aws.names import timers_table_name
from infra.envelope import decode
from infra.provision import apply
from infra.settings import SchedulingSettings
from infra.timers import TimerStore
from infra.topology import Topology, parse_topology
from producers.app import create_app
from producers.delay import DelayError, due_time

YAML = """
version: 1
project: dl
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  note.send: {topic: jobs, payload: "tests.jobs:Note", handler: "tests.jobs:record", ledger: true}
"""
NOTE = {"label": "hello"}
#: One hour: the limit these tests run the API with.
MAX_DELAY_S = 3600.0


@pytest.fixture
def topology(mocked_aws: None) -> Topology:
    topology = parse_topology(YAML, environment="unit")
    apply(topology)
    return topology


@pytest.fixture
def client(topology: Topology) -> TestClient:
    app = create_app(topology, scheduling=SchedulingSettings(max_delay_s=MAX_DELAY_S))
    return TestClient(app)


@pytest.fixture
def store(topology: Topology) -> TimerStore:
    return TimerStore(timers_table_name(topology))


def _published() -> int:
    return aws.request_counts().get("sns.Publish", 0) + aws.request_counts().get(
        "sns.PublishBatch", 0
    )


def _detail(answer: Any) -> str:
    return str(answer.json()["detail"])


# -- the rules, without HTTP ---------------------------------------------------------------

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_due_time_rules() -> None:
    assert due_time(None, None, now=NOW, max_delay_s=60) is None
    assert due_time(0, None, now=NOW, max_delay_s=60) is None  # no delay: now
    assert due_time(60, None, now=NOW, max_delay_s=60) == NOW + timedelta(seconds=60)
    past = NOW - timedelta(days=1)
    assert due_time(None, past, now=NOW, max_delay_s=60) is None  # passed: now
    berlin = datetime.fromisoformat("2026-12-06T13:00:30+01:00")
    assert due_time(None, berlin, now=NOW, max_delay_s=60) == NOW + timedelta(seconds=30)
    # Rounded up to the millisecond (the timer table's precision): never early.
    odd = due_time(1.0004, None, now=NOW, max_delay_s=60)
    assert odd == NOW + timedelta(seconds=1, milliseconds=1)
    for delay_s, not_before, message in (
        (1, NOW, "not both"),
        (-1, None, "from 0 to 60 s"),
        (float("nan"), None, "from 0 to 60 s"),
        (61, None, "above the limit of 60 s (1m; scheduling.max_delay_s)"),
        (None, NOW.replace(tzinfo=None), "needs a UTC offset"),
        (None, NOW + timedelta(seconds=61), "further away than the limit of 60 s"),
    ):
        with pytest.raises(DelayError, match=message.replace("(", r"\(").replace(")", r"\)")):
            due_time(delay_s, not_before, now=NOW, max_delay_s=60)


# -- POST /v1/jobs/{type}: query parameters --------------------------------------------------


def test_a_delayed_job_is_stored_not_published_and_scheduled_in_the_ledger(
    client: TestClient, store: TimerStore
) -> None:
    before = datetime.now(UTC)
    published = _published()
    answer = client.post("/v1/jobs/note.send", params={"delay_s": 600}, json=NOTE)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    due_at = datetime.fromisoformat(body["due_at"])
    assert before + timedelta(seconds=600) <= due_at <= datetime.now(UTC) + timedelta(seconds=601)
    assert _published() == published  # stored, not published
    timer = store.get(body["id"])
    assert timer is not None
    assert timer.due_at == due_at
    envelope = decode(timer.envelope_json)  # the envelope a job published now would get
    assert (envelope.id, envelope.type, envelope.data) == (body["id"], "note.send", NOTE)

    status = client.get(body["status_url"]).json()
    assert status["state"] == "scheduled"
    assert datetime.fromisoformat(status["due_at"]) == due_at
    assert status["queues"]["work"]["state"] == "scheduled"


def test_not_before_as_a_query_parameter(client: TestClient, store: TimerStore) -> None:
    when = (datetime.now(UTC) + timedelta(minutes=5)).astimezone(
        datetime.fromisoformat("2026-01-01T00:00:00+05:30").tzinfo
    )
    # httpx encodes the "+" of the offset (%2B); a bare "+" in a URL would be a space.
    answer = client.post("/v1/jobs/note.send", params={"not_before": when.isoformat()}, json=NOTE)
    assert answer.status_code == 202, answer.text
    due_at = datetime.fromisoformat(answer.json()["due_at"])
    assert due_at.utcoffset() == timedelta(0)
    assert abs((due_at - when).total_seconds()) < 0.002
    assert store.get(answer.json()["id"]) is not None


def test_a_due_time_that_has_passed_is_published_now(client: TestClient) -> None:
    published = _published()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    answer = client.post("/v1/jobs/note.send", params={"not_before": past}, json=NOTE)
    assert answer.status_code == 202, answer.text
    assert "due_at" not in answer.json()
    assert _published() == published + 1
    assert client.get(answer.json()["status_url"]).json()["state"] == "queued"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"delay_s": 5, "not_before": "2030-01-01T00:00:00Z"}, "give delay_s or not_before"),
        ({"delay_s": 3601}, "above the limit of 3600 s (1h; scheduling.max_delay_s)"),
        ({"delay_s": -1}, "from 0 to 3600 s"),
        ({"not_before": "2030-01-01T00:00:00"}, "needs a UTC offset"),
        ({"not_before": "2099-01-01T00:00:00Z"}, "further away than the limit of 3600 s"),
    ],
)
def test_refused_delays_are_422_with_the_reason(
    client: TestClient, params: dict[str, Any], message: str
) -> None:
    answer = client.post("/v1/jobs/note.send", params=params, json=NOTE)
    assert answer.status_code == 422
    assert message in _detail(answer)


def test_an_unreadable_not_before_is_422(client: TestClient) -> None:
    answer = client.post("/v1/jobs/note.send", params={"not_before": "tomorrow"}, json=NOTE)
    assert answer.status_code == 422
    assert "not_before" in json.dumps(answer.json())


def test_the_openapi_document_lists_the_query_parameters(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs/note.send"]["post"]
    query = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert query == {"delay_s", "not_before"}


# -- POST /v1/jobs: fields of each job ------------------------------------------------------


def test_a_batch_mixes_delayed_refused_and_immediate_jobs(
    client: TestClient, store: TimerStore
) -> None:
    jobs = [
        {"type": "note.send", "data": NOTE, "delay_s": 30},
        {"type": "note.send", "data": NOTE, "delay_s": 30, "not_before": "2030-01-01T00:00:00Z"},
        {"type": "note.send", "data": NOTE},
        {"type": "note.send", "data": NOTE, "delay_s": 7200},
    ]
    answer = client.post("/v1/jobs", json={"jobs": jobs})
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 202, 422]
    assert "due_at" in results[0]
    assert "due_at" not in results[2]
    assert store.get(results[0]["id"]) is not None
    assert store.get(results[2]["id"]) is None  # published now
    assert "give delay_s or not_before, not both" in results[1]["error"]
    assert "above the limit of 3600 s" in results[3]["error"]


def test_a_delayed_job_with_an_idempotency_key_is_one_job(
    client: TestClient, store: TimerStore
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/jobs/note.send", params={"delay_s": 60}, json=NOTE, headers=headers)
    again = client.post("/v1/jobs/note.send", params={"delay_s": 60}, json=NOTE, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["duplicate"] is True
    assert store.get(first.json()["id"]) is not None


def test_without_the_timer_table_a_delayed_job_is_503(
    client: TestClient, topology: Topology
) -> None:
    aws.client("dynamodb").delete_table(TableName=timers_table_name(topology))
    answer = client.post("/v1/jobs/note.send", params={"delay_s": 60}, json=NOTE)
    assert answer.status_code == 503
    assert "could not be stored" in _detail(answer)
    assert answer.headers["Retry-After"]
