"""The producer API as a real process, over HTTP, publishing to the emulator.

(Named ``test_api_http.py``: a second ``test_api.py`` next to the unit one would
clash under pytest's default import mode, as tests/unit and tests/integration are
not packages.)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli.api import register
from infra import aws
from infra.envelope import decode
from infra.net import free_port
from infra.provision import apply
from infra.topology import Topology, load_topology, payload_model
from producers.client import ConveyorClient, EnqueueError
from tests.support.processes import Api

if TYPE_CHECKING:
    from tests.support.emulator import AwsEnv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
QUEUES_FILE = REPO / "queues.yaml"
SERVE = "import typer; from conveyor.cli.api import register; a = typer.Typer(); register(a); a()"
STARTUP_DEADLINE_S = 60.0
DELIVERY_DEADLINE_S = 30.0

#: One valid payload per sample job type.
PAYLOADS: dict[str, dict[str, Any]] = {
    "image.resize": {"image_url": "https://example.com/a.png", "width_px": 640},
    "image.thumbnail": {"image_url": "https://example.com/b.png"},
    "order.placed": {"order_id": "o-1", "customer_email": "ada@example.com", "amount": "9.90"},
    "email.send": {"to": "bob@example.com", "subject": "hello"},
    "invoice.render": {"order_id": "o-1"},
}


def _start_api(env: dict[str, str], log: Path) -> Iterator[Api]:
    """The API through ``register`` (SERVE) on a free loopback port, its output in ``log``."""
    api = Api(
        env={"CONVEYOR_API_AUTH": "none", **env, "CONVEYOR_QUEUES_FILE": str(QUEUES_FILE)},
        log_dir=log.parent,
        name=log.stem,
        args=("--host", "127.0.0.1"),
        command=(sys.executable, "-c", SERVE),
    )
    try:
        api.wait_ready(timeout_s=STARTUP_DEADLINE_S)
        yield api
    finally:
        api.stop(timeout_s=15)


@pytest.fixture
def topology(aws_env: AwsEnv) -> Topology:
    topology = load_topology(QUEUES_FILE, environment=aws_env.environment)
    apply(topology)  # topics, queues, DLQs, filtered raw subscriptions
    return topology


@pytest.fixture
def api(aws_env: AwsEnv, topology: Topology, tmp_path: Path) -> Iterator[Api]:
    yield from _start_api(aws_env.env, tmp_path / "api.log")


@pytest.fixture
def unreachable_aws_api(aws_env: AwsEnv, tmp_path: Path) -> Iterator[Api]:
    """An API whose AWS endpoint is a closed port."""
    env = {**aws_env.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    yield from _start_api(env, tmp_path / "api-unreachable.log")


def _receive(topology: Topology, queue: str, *, wait_s: int) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=topology.queue_name(queue))["QueueUrl"]
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
    messages = [dict(m) for m in got.get("Messages", [])]
    if messages:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": str(m["ReceiptHandle"])}
                for i, m in enumerate(messages)
            ],
        )
    return messages


def _collect(topology: Topology, expected: dict[str, set[str]]) -> dict[str, list[Any]]:
    """Receive until every expected job id is in (deadline), then sweep every queue once more.

    The emulator delivers to every matching subscription inside the Publish call,
    so a job routed to a wrong queue is already there by the time the right ones are.
    """
    received: dict[str, list[Any]] = {q: [] for q in topology.queues}
    deadline = time.monotonic() + DELIVERY_DEADLINE_S

    def missing() -> list[str]:
        return [
            q
            for q, ids in expected.items()
            if not ids <= {decode(m["Body"]).id for m in received[q]}
        ]

    while (waiting := missing()) and time.monotonic() < deadline:
        for q in waiting:
            received[q] += _receive(topology, q, wait_s=1)
    for q in topology.queues:
        while batch := _receive(topology, q, wait_s=0):
            received[q] += batch
    return received


def test_each_job_reaches_exactly_the_queues_its_type_fans_out_to(
    api: Api, topology: Topology
) -> None:
    accepted: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        for job_type, payload in PAYLOADS.items():
            response = http.post(f"/v1/jobs/{job_type}", json=payload)
            assert response.status_code == 202, response.text
            body = response.json()
            assert body["queues"] == topology.queues_receiving(job_type)
            assert response.headers["location"] == body["status_url"] == f"/v1/jobs/{body['id']}"
            accepted[body["id"]] = {"type": job_type, "payload": payload}

    expected: dict[str, set[str]] = {q: set() for q in topology.queues}
    for job_id, job in accepted.items():
        for q in topology.queues_receiving(job["type"]):
            expected[q].add(job_id)
    received = _collect(topology, expected)

    for queue, messages in received.items():
        envelopes = [decode(m["Body"]) for m in messages]
        assert sorted(e.id for e in envelopes) == sorted(expected[queue]), queue
        for envelope in envelopes:
            job = accepted[envelope.id]
            model = payload_model(topology, job["type"])
            assert envelope.type == job["type"]
            assert envelope.source == "/conveyor/api"
            assert envelope.data == model.model_validate(job["payload"]).model_dump(mode="json")


def test_client_and_cli_enqueue_through_the_running_api(api: Api, topology: Topology) -> None:
    with ConveyorClient(api.url) as client:
        result = client.enqueue(
            "email.send",
            PAYLOADS["email.send"],
            idempotency_key="welcome-1",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        assert result.queues == ["notifications"]
        with pytest.raises(EnqueueError) as caught:
            client.enqueue("email.send", {"to": "not an address"})
        assert caught.value.status_code == 422
        assert "to:" in caught.value.detail
        assert "subject: Field required" in caught.value.detail

    cli = typer.Typer()
    register(cli)
    run = CliRunner().invoke(
        cli, ["enqueue", "image.resize", json.dumps(PAYLOADS["image.resize"]), "--api-url", api.url]
    )
    assert run.exit_code == 0, run.output
    cli_job_id = run.stdout.strip()
    unknown = CliRunner().invoke(cli, ["enqueue", "video.encode", "{}", "--api-url", api.url])
    assert unknown.exit_code == 2
    assert "unknown job type 'video.encode'" in unknown.output

    received = _collect(topology, {"notifications": {result.id}, "images": {cli_job_id}})
    [email] = [decode(m["Body"]) for m in received["notifications"]]
    assert (email.id, email.idempotencykey) == (result.id, "welcome-1")
    assert email.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert [decode(m["Body"]).id for m in received["images"]] == [cli_job_id]


def test_limits_and_validation_over_http(api: Api, topology: Topology) -> None:
    # Above the default body limit: payloads.max_bytes (10 MiB) plus 256 KiB of framing.
    big = json.dumps(
        {**PAYLOADS["email.send"], "body": "x" * (topology.payloads.max_bytes + 300 * 1024)}
    ).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 256 * 1024):
            yield big[i : i + 256 * 1024]

    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=api.url, timeout=10) as http:
        assert http.post("/v1/jobs/email.send", content=big, headers=headers).status_code == 413
        chunked = http.post("/v1/jobs/email.send", content=chunks(), headers=headers)
        assert chunked.status_code == 413
        assert http.post("/v1/jobs/email.send", content=b"{", headers=headers).status_code == 422
        assert http.post("/v1/jobs/nope", json={}).status_code == 404
        assert http.get("/v1/jobs/some-id").status_code == 404
        assert http.get("/readyz").status_code == 200
        spec = http.get("/openapi.json").json()
        assert {f"/v1/jobs/{jt}" for jt in topology.job_types} <= spec["paths"].keys()
    assert _collect(topology, {}) == {q: [] for q in topology.queues}


def test_unreachable_aws_is_503_never_202(unreachable_aws_api: Api) -> None:
    with httpx.Client(base_url=unreachable_aws_api.url, timeout=30) as http:
        for job_type, payload in PAYLOADS.items():
            response = http.post(f"/v1/jobs/{job_type}", json=payload)
            assert response.status_code == 503, response.text
            assert response.json()["detail"].startswith("job not published: ")
            assert int(response.headers["retry-after"]) > 0
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "retry-after" in ready.headers
        assert http.get("/healthz").status_code == 200
    cli = typer.Typer()
    register(cli)
    run = CliRunner().invoke(
        cli,
        [
            "enqueue",
            "invoice.render",
            '{"order_id": "o-2"}',
            "--api-url",
            unreachable_aws_api.url,
            "--retry-for-s",
            "0",
        ],
    )
    assert run.exit_code == 1
    assert run.output.startswith("conveyor: enqueue failed: 503: job not published: ")
    assert "(retry after " in run.output
    assert unreachable_aws_api.proc.poll() is None  # still serving


def test_a_500_job_batch_lands_on_the_right_queues(api: Api, topology: Topology) -> None:
    types = sorted(PAYLOADS)
    jobs = [
        {"type": types[i % len(types)], "data": PAYLOADS[types[i % len(types)]]} for i in range(500)
    ]
    with httpx.Client(base_url=api.url, timeout=60) as http:
        response = http.post("/v1/jobs", json={"jobs": jobs})
    assert response.status_code == 202, response.text[:2000]
    body = response.json()
    assert (body["accepted"], body["rejected"]) == (500, 0)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(500))
    assert [r["type"] for r in results] == [j["type"] for j in jobs]
    assert len({r["id"] for r in results}) == 500

    expected: dict[str, set[str]] = {q: set() for q in topology.queues}
    for r in results:
        assert r["queues"] == topology.queues_receiving(r["type"])
        for q in r["queues"]:
            expected[q].add(r["id"])
    received = _collect(topology, expected)
    for queue, messages in received.items():
        ids = [decode(m["Body"]).id for m in messages]
        assert len(ids) == len(expected[queue]), queue  # each job once, nothing extra
        assert set(ids) == expected[queue], queue
    assert {q: len(ids) for q, ids in expected.items()} == {
        "billing": 200,
        "images": 200,
        "notifications": 200,
    }
