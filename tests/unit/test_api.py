"""The producer API in process: FastAPI's TestClient, SNS/SQS from moto's in-process mock."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from fastapi.testclient import TestClient
from pydantic import BaseModel
from structlog.testing import capture_logs

from infra import aws
from infra.aws.names import payload_bucket_name
from infra.envelope import decode
from infra.limits import SNS_MAX_MESSAGE_BYTES
from infra.topology import Topology, TopologyError, load_topology, parse_topology
from producers.app import create_app, valid_traceparent
from producers.enqueue import fingerprint
from producers.publisher import PublishError, classify
from sample_jobs.payloads import OrderPlaced
from tests.support.mocked import clear_aws_env
from tests.support.polling import eventually

REPO = Path(__file__).resolve().parents[2]
ORDER = {"order_id": "o-1", "customer_email": "ada@example.com", "amount": "12.50"}
RESIZE = {"image_url": "https://example.com/a.png", "width_px": 640}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def topology() -> Topology:
    return load_topology(REPO / "queues.yaml", environment="unit")


@pytest.fixture
def client(topology: Topology, mocked_aws: None) -> TestClient:
    return TestClient(create_app(topology))


def create_tables(topology: Topology) -> None:
    """The idempotency keys' and the job ledger's tables (what `infra apply` creates)."""
    ddb = aws.client("dynamodb")
    for name in ("idempotency", "jobs"):
        ddb.create_table(
            TableName=topology.resource_name(name),
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


def provision(topology: Topology) -> dict[str, str]:
    """Topics, queues, filtered raw subscriptions and tables of ``topology``; returns queue URLs."""
    create_tables(topology)
    sns, sqs = aws.client("sns"), aws.client("sqs")
    arns = {}
    for name, topic in topology.topics.items():
        attributes = {"FifoTopic": "true"} if topic.fifo else {}
        arns[name] = sns.create_topic(Name=topology.topic_name(name), Attributes=attributes)[
            "TopicArn"
        ]
    urls = {}
    for qname, queue in topology.queues.items():
        attributes = {"FifoQueue": "true"} if queue.fifo else {}
        url = sqs.create_queue(QueueName=topology.queue_name(qname), Attributes=attributes)[
            "QueueUrl"
        ]
        urls[qname] = url
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        for sub in queue.subscriptions:
            types_ = [
                jt
                for jt in topology.job_types_of_queue(qname)
                if topology.job_types[jt].topic == sub.topic
            ]
            sns.subscribe(
                TopicArn=arns[sub.topic],
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={
                    "RawMessageDelivery": "true",
                    "FilterPolicyScope": "MessageBody",
                    "FilterPolicy": json.dumps({"type": types_}),
                },
            )
    return urls


def drain(url: str) -> list[dict[str, Any]]:
    """Every message now in the queue at ``url`` (moto delivers during Publish)."""
    sqs = aws.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            return out
        out.extend(dict(m) for m in got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- routing and validation -----------------------------------------------------------


def test_openapi_lists_every_job_type_with_its_schema(
    client: TestClient, topology: Topology
) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name, jt in topology.job_types.items():
        operation = doc["paths"][f"/v1/jobs/{name}"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        model_name = ref.rsplit("/", 1)[-1]
        assert model_name == jt.payload.rsplit(":", 1)[-1]
        assert schemas[model_name]["description"]  # the model's docstring
        assert schemas[model_name]["properties"]
        if jt.description:
            assert jt.description in operation["description"]
        assert {"202", "413", "422", "503"} <= operation["responses"].keys()
    assert "/v1/jobs/{job_type}" not in doc["paths"]  # the catch-all stays out of the docs
    assert client.get("/docs").status_code == 200


def test_unknown_job_type_is_404_naming_the_known_ones(client: TestClient) -> None:
    response = client.post("/v1/jobs/video.transcode", json={"x": 1})
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail.startswith("unknown job type 'video.transcode' (known: ")
    assert "email.send, image.resize, image.thumbnail, invoice.render, order.placed" in detail


def test_invalid_payload_is_422_with_field_errors(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs/image.resize", json={"image_url": "not a url", "width_px": -3, "colour": 1}
    )
    assert response.status_code == 422
    locs = {tuple(err["loc"]) for err in response.json()["detail"]}
    assert locs == {("body", "image_url"), ("body", "width_px"), ("body", "colour")}


def test_missing_field_is_422(client: TestClient) -> None:
    response = client.post("/v1/jobs/image.resize", json={"width_px": 10})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "image_url"]]


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]"])
def test_invalid_json_is_422(client: TestClient, body: bytes) -> None:
    response = client.post(
        "/v1/jobs/image.resize", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422


def test_oversized_body_with_content_length_is_413(topology: Topology, mocked_aws: None) -> None:
    urls = provision(topology)
    client = TestClient(create_app(topology, max_body_bytes=1024))
    body = json.dumps({**RESIZE, "padding": "x" * 2000}).encode()
    response = client.post(
        "/v1/jobs/image.resize", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "1024 bytes" in response.json()["detail"]
    assert drain(urls["images"]) == []


def test_oversized_chunked_body_without_content_length_is_413(
    topology: Topology, mocked_aws: None
) -> None:
    urls = provision(topology)
    client = TestClient(create_app(topology, max_body_bytes=1024))
    body = json.dumps({**RESIZE, "padding": "x" * 2000}).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    request = client.build_request(
        "POST",
        "/v1/jobs/image.resize",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = client.send(request)
    assert response.status_code == 413
    assert drain(urls["images"]) == []


def test_body_at_the_limit_is_accepted(topology: Topology, mocked_aws: None) -> None:
    provision(topology)
    body = json.dumps(RESIZE).encode()
    client = TestClient(create_app(topology, max_body_bytes=len(body)))
    response = client.post(
        "/v1/jobs/image.resize", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202


class Blob(BaseModel):
    """A payload as large as the caller likes."""

    blob: str


@pytest.fixture
def blob_topology(monkeypatch: pytest.MonkeyPatch) -> Topology:
    module = types.ModuleType("conveyor_test_payloads")
    module.Blob = Blob  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "conveyor_test_payloads", module)
    return parse_topology(
        """
topics: {bulk: {}}
queues: {bulk: {subscriptions: [{topic: bulk}]}}
job_types:
  blob.store: {topic: bulk, payload: "conveyor_test_payloads:Blob", handler: "json:loads"}
""",
        environment="unit",
    )


def test_payload_above_payloads_max_bytes_is_413(blob_topology: Topology, mocked_aws: None) -> None:
    topology = blob_topology.model_copy(
        update={"payloads": blob_topology.payloads.model_copy(update={"max_bytes": 1000})}
    )
    urls = provision(topology)
    client = TestClient(create_app(topology))
    response = client.post("/v1/jobs/blob.store", json={"blob": "x" * 1000})
    assert response.status_code == 413
    assert "above the limit of 1000 bytes" in response.json()["detail"]
    assert drain(urls["bulk"]) == []


def test_payload_above_the_sns_limit_travels_through_s3(
    blob_topology: Topology, mocked_aws: None
) -> None:
    urls = provision(blob_topology)
    bucket = payload_bucket_name(blob_topology, aws.account_id(), aws.region_name())
    aws.client("s3").create_bucket(Bucket=bucket)
    client = TestClient(create_app(blob_topology))
    blob = "x" * (SNS_MAX_MESSAGE_BYTES + 10)
    response = client.post("/v1/jobs/blob.store", json={"blob": blob})
    assert response.status_code == 202, response.text
    [message] = drain(urls["bulk"])
    envelope = decode(message["Body"])
    assert envelope.data is None
    assert envelope.dataref == f"s3://{bucket}/blob.store/{response.json()['id']}.json"
    stored = aws.client("s3").get_object(Bucket=bucket, Key=envelope.dataref.split("/", 3)[3])
    assert json.loads(stored["Body"].read()) == {"blob": blob}


def test_payload_s3_refuses_is_503_and_not_published(
    blob_topology: Topology, mocked_aws: None
) -> None:
    urls = provision(blob_topology)  # no bucket
    client = TestClient(create_app(blob_topology))
    response = client.post("/v1/jobs/blob.store", json={"blob": "x" * (SNS_MAX_MESSAGE_BYTES + 10)})
    assert response.status_code == 503
    assert "the payload could not be stored" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0
    assert drain(urls["bulk"]) == []


# -- publishing -------------------------------------------------------------------------


def test_accepted_job_is_202_and_fans_out(client: TestClient, topology: Topology) -> None:
    urls = provision(topology)
    response = client.post("/v1/jobs/order.placed", json=ORDER)
    assert response.status_code == 202
    body = response.json()
    assert set(body) == {"id", "type", "status_url", "queues", "duplicate"}
    assert body["duplicate"] is False
    assert body["type"] == "order.placed"
    assert body["status_url"] == f"/v1/jobs/{body['id']}"
    assert response.headers["location"] == body["status_url"]
    assert (
        body["queues"] == ["billing", "notifications"] == topology.queues_receiving("order.placed")
    )
    for qname, url in urls.items():
        messages = drain(url)
        if qname in body["queues"]:
            assert len(messages) == 1
            envelope = decode(messages[0]["Body"])
            assert (envelope.id, envelope.type, envelope.source) == (
                body["id"],
                "order.placed",
                "/conveyor/api",
            )
            assert envelope.data == {**ORDER, "currency": "EUR"}
        else:
            assert messages == []


def test_traceparent_and_idempotency_key_reach_the_envelope(
    client: TestClient, topology: Topology
) -> None:
    urls = provision(topology)
    response = client.post(
        "/v1/jobs/image.resize",
        json=RESIZE,
        headers={"traceparent": TRACEPARENT, "Idempotency-Key": "resize-42"},
    )
    assert response.status_code == 202
    [message] = drain(urls["images"])
    envelope = decode(message["Body"])
    assert envelope.traceparent == TRACEPARENT
    assert envelope.idempotencykey == "resize-42"


def test_an_invalid_traceparent_starts_a_new_trace(client: TestClient, topology: Topology) -> None:
    urls = provision(topology)
    response = client.post("/v1/jobs/image.resize", json=RESIZE, headers={"traceparent": "bogus"})
    assert response.status_code == 202
    [message] = drain(urls["images"])
    traceparent = decode(message["Body"]).traceparent
    assert traceparent is not None
    assert traceparent != "bogus"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (TRACEPARENT, TRACEPARENT),
        (TRACEPARENT.upper(), TRACEPARENT),
        (None, None),
        ("00-" + "0" * 32 + "-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01", None),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", None),
    ],
)
def test_valid_traceparent(value: str | None, expected: str | None) -> None:
    assert valid_traceparent(value) == expected


def test_fifo_topic_gets_group_and_deduplication_ids(mocked_aws: None) -> None:
    topology = parse_topology(
        """
topics: {ledger: {fifo: true}}
queues: {ledger: {fifo: true, subscriptions: [{topic: ledger}]}}
job_types:
  order.placed:
    topic: ledger
    payload: "sample_jobs.payloads:OrderPlaced"
    handler: "sample_jobs.handlers:charge_order"
""",
        environment="unit",
    )
    urls = provision(topology)
    response = TestClient(create_app(topology)).post("/v1/jobs/order.placed", json=ORDER)
    assert response.status_code == 202
    [message] = drain(urls["ledger"])
    assert message["Attributes"]["MessageGroupId"] == response.json()["id"]
    assert message["Attributes"]["MessageDeduplicationId"] == response.json()["id"]


FIFO_YAML = """
topics: {ledger: {fifo: true}}
queues: {ledger: {fifo: true, subscriptions: [{topic: ledger}]}}
job_types:
  order.placed:
    topic: ledger
    payload: "sample_jobs.payloads:OrderPlaced"
    handler: "sample_jobs.handlers:charge_order"
    message_group_field: order_id
"""


def test_fifo_group_from_the_declared_field_or_the_header(mocked_aws: None) -> None:
    topology = parse_topology(FIFO_YAML, environment="unit")
    urls = provision(topology)
    client = TestClient(create_app(topology))
    by_field = client.post("/v1/jobs/order.placed", json=ORDER, headers={"Idempotency-Key": "k1"})
    by_header = client.post(
        "/v1/jobs/order.placed", json=ORDER, headers={"X-Message-Group-Id": "account-7"}
    )
    batch = client.post(
        "/v1/jobs",
        json={"jobs": [{"type": "order.placed", "data": {**ORDER, "order_id": "o-2"}}]},
    )
    assert (by_field.status_code, by_header.status_code, batch.status_code) == (202, 202, 202)
    attributes = {decode(m["Body"]).id: m["Attributes"] for m in drain(urls["ledger"])}
    field_ids = attributes[by_field.json()["id"]]
    assert field_ids["MessageGroupId"] == "o-1"
    # Deduplicated on the idempotency key (scope and key), not on the job id.
    assert field_ids["MessageDeduplicationId"] == hashlib.sha256(b"-#k1").hexdigest()
    assert attributes[by_header.json()["id"]]["MessageGroupId"] == "account-7"
    assert attributes[batch.json()["results"][0]["id"]]["MessageGroupId"] == "o-2"


def test_content_based_deduplication_hashes_the_job_not_the_envelope(mocked_aws: None) -> None:
    yaml = FIFO_YAML.replace(
        "topics: {ledger: {fifo: true}}",
        "topics: {ledger: {fifo: true, content_based_deduplication: true}}",
    )
    topology = parse_topology(yaml, environment="unit")
    urls = provision(topology)
    client = TestClient(create_app(topology))
    first = client.post("/v1/jobs/order.placed", json=ORDER)
    assert first.status_code == 202
    [message] = drain(urls["ledger"])
    data = OrderPlaced.model_validate(ORDER).model_dump(mode="json")
    assert message["Attributes"]["MessageDeduplicationId"] == fingerprint("order.placed", data)


def test_message_group_field_needs_a_fifo_topic() -> None:
    with pytest.raises(TopologyError, match="message_group_field: topic 'ledger' is not FIFO"):
        parse_topology(FIFO_YAML.replace("fifo: true", "fifo: false"), environment="unit")


def test_one_log_event_per_accepted_job_without_the_payload(
    client: TestClient, topology: Topology
) -> None:
    provision(topology)
    with capture_logs() as events:
        response = client.post(
            "/v1/jobs/order.placed", json=ORDER, headers={"traceparent": TRACEPARENT}
        )
    assert response.status_code == 202
    accepted = [e for e in events if e["event"] == "job accepted"]
    assert len(accepted) == 1
    event = accepted[0]
    assert event["log_level"] == "info"
    assert event["job_id"] == response.json()["id"]
    assert event["job_type"] == "order.placed"
    assert event["topic"] == "orders"
    assert event["trace_id"] == TRACEPARENT.split("-")[1]
    assert "ada@example.com" not in repr(events)


# -- failures: never a 202 for an unpublished job, never a 500 -----------------------------


def test_missing_topic_is_503_and_says_to_provision(client: TestClient) -> None:
    response = client.post("/v1/jobs/image.resize", json=RESIZE)
    assert response.status_code == 503
    assert "conveyor infra apply" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


def test_unreachable_sns_is_503(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_aws_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("CONVEYOR_AWS_ACCOUNT_ID", "123456789012")  # skip STS: reach SNS
    aws.reset_clients()
    try:
        client = TestClient(create_app(topology))
        response = client.post("/v1/jobs/image.resize", json=RESIZE)
        assert response.status_code == 503
        assert "SNS is unreachable" in response.json()["detail"]
        assert "retry-after" in response.headers
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "retry-after" in ready.headers
        assert client.get("/healthz").status_code == 200
    finally:
        aws.reset_clients()


def test_unreachable_sts_is_503(topology: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    clear_aws_env(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    aws.reset_clients()
    try:
        response = TestClient(create_app(topology)).post("/v1/jobs/image.resize", json=RESIZE)
        assert response.status_code == 503
        assert "STS" in response.json()["detail"]
    finally:
        aws.reset_clients()


class _FailingSns:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def publish(self, **_: Any) -> dict[str, Any]:
        raise self.exc


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": "arn:aws:sns:secret"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "Publish",
    )


@pytest.mark.parametrize(
    ("exc", "retry_after"),
    [
        (_client_error("Throttling", 400), "1"),
        (_client_error("InternalError", 500), "5"),
        (_client_error("AuthorizationError", 403), "5"),
        (EndpointConnectionError(endpoint_url="http://x"), "5"),
        (RuntimeError("a bug"), "5"),
    ],
)
def test_publish_failures_are_503_with_retry_after(
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    exc: Exception,
    retry_after: str,
) -> None:
    monkeypatch.setenv("CONVEYOR_AWS_ACCOUNT_ID", "123456789012")
    monkeypatch.setattr(aws, "client", lambda *_a, **_k: _FailingSns(exc))
    with capture_logs() as events:
        response = client.post("/v1/jobs/image.resize", json=RESIZE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == retry_after
    assert response.json()["detail"].startswith("job not published: ")
    assert "secret" not in response.json()["detail"]
    assert [e["event"] for e in events] == ["job not published"]
    if isinstance(exc, RuntimeError):
        assert events[0]["exc_info"] is exc  # logged with its traceback


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_client_error("ThrottlingException", 400), "throttling"),
        (_client_error("Whatever", 429), "throttling"),
        (_client_error("ServiceUnavailable", 503), "server error"),
        (EndpointConnectionError(endpoint_url="http://x"), "unreachable"),
        (ConnectTimeoutError(endpoint_url="http://x"), "unreachable"),
        (ReadTimeoutError(endpoint_url="http://x"), "may have been published"),
        (ConnectionClosedError(endpoint_url="http://x"), "may have been published"),
        (NoCredentialsError(), "credentials"),
        (ValueError("?"), "unexpected"),
    ],
)
def test_classify(exc: Exception, expected: str) -> None:
    error = classify(exc)
    assert isinstance(error, PublishError)
    assert error.status_code == 503
    assert expected in error.detail
    assert error.unexpected == isinstance(exc, ValueError)
    # Sent, and no answer: SNS may have published the job, and the API must not say it did not.
    assert error.uncertain == isinstance(exc, ReadTimeoutError | ConnectionClosedError)


# -- status and health ----------------------------------------------------------------------


def test_job_status_comes_from_the_ledger(client: TestClient, topology: Topology) -> None:
    missing_table = client.get("/v1/jobs/abc")
    assert missing_table.status_code == 503
    assert "conveyor infra apply" in missing_table.json()["detail"]
    provision(topology)
    assert client.get("/v1/jobs/abc").status_code == 404
    job = client.post("/v1/jobs/order.placed", json=ORDER).json()
    status = client.get(job["status_url"])
    assert status.status_code == 200, status.text
    assert status.json()["state"] == "queued"


def test_health_and_readiness(client: TestClient, topology: Topology) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    not_ready = client.get("/readyz")
    assert not_ready.status_code == 503
    assert "conveyor infra apply" in not_ready.json()["detail"]
    provision(topology)
    # The answer is cached for CONVEYOR_API_READY_CACHE_S (5 s), failures included.
    ready = eventually(
        lambda: (answer := client.get("/readyz")).status_code == 200 and answer,
        what="/readyz to answer 200 after provisioning",
    )
    assert ready.json()["topics"] == [topology.topic_name(t) for t in topology.topics]
