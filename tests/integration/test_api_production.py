"""The producer API in production shape, as a real ``conveyor api`` process on the emulator.

API keys (401/403/429), idempotency keys (nothing published twice, 409), an SNS
that never answers (503, nothing recorded), and the client and CLI end to end.
The module provisions one environment and starts one keyed API for its tests
(each test asserts on the jobs and keys it made, and on metric deltas).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from conveyor.cli import app as conveyor_cli
from infra import aws
from infra.emulator import EmulatorProcess
from infra.envelope import decode
from infra.provision import apply
from infra.topology import Topology, load_topology
from producers.auth import hash_key
from producers.client import NO_RETRY, AuthError, Client, EnqueueError
from tests.integration.test_api_http import PAYLOADS, QUEUES_FILE, _collect, _start_api
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.processes import Api

pytestmark = [
    pytest.mark.integration,
    # One running API for the module: its tests go to one pytest-xdist worker.
    pytest.mark.xdist_group("api-production"),
]

FULL_KEY = "cvy_full-access-key-for-tests-0123456789abcdef"
MAIL_KEY = "cvy_mail-only-key-for-tests-0123456789abcdef"
EMAIL = PAYLOADS["email.send"]
RESIZE = PAYLOADS["image.resize"]


@pytest.fixture(scope="module")
def env(emulator: EmulatorProcess) -> Iterator[dict[str, str]]:
    """This process pointed at the emulator under a fresh environment, for the module."""
    with (
        pytest.MonkeyPatch.context() as patch,
        pointed_at(emulator.endpoint_url, fresh_environment(), patch) as aws_env,
    ):
        yield aws_env.env


@pytest.fixture(scope="module")
def topology(env: dict[str, str]) -> Topology:
    topology = load_topology(QUEUES_FILE, environment=env["CONVEYOR_ENVIRONMENT"])
    apply(topology)
    return topology


@pytest.fixture(scope="module")
def keyed_api(
    env: dict[str, str], topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """An API that requires keys: one for everything, one for e-mail only and slow."""
    tmp = tmp_path_factory.mktemp("keyed-api")
    keys = tmp / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - {{name: full, sha256: {hash_key(FULL_KEY)}}}\n"
        f"  - {{name: mail, sha256: {hash_key(MAIL_KEY)}, job_types: [email.send],"
        " rate_per_s: 0.01, burst: 2}\n",
        encoding="utf-8",
    )
    api_env = {**env, "CONVEYOR_API_AUTH": "keys", "CONVEYOR_API_KEYS_FILE": str(keys)}
    yield from _start_api(api_env, tmp / "api.log")


def _metrics(http: httpx.Client) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}``."""
    values = {}
    for line in http.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _idempotency_item(topology: Topology, scope: str, key: str) -> dict[str, Any] | None:
    got = aws.client("dynamodb").get_item(
        TableName=topology.resource_name("idempotency"),
        Key={"pk": {"S": f"{scope}#{key}"}},
        ConsistentRead=True,
    )
    item = got.get("Item")
    return {k: next(iter(v.values())) for k, v in item.items()} if item else None


# -- auth and limits ----------------------------------------------------------------------------


def test_keys_are_required_and_scoped(keyed_api: Api, topology: Topology) -> None:
    _collect(topology, {})  # start from empty queues: every message below is this test's
    with httpx.Client(base_url=keyed_api.url, timeout=30) as http:
        before = _metrics(http)
        missing = http.post("/v1/jobs/email.send", json=EMAIL)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "API key is required" in missing.json()["detail"]
        wrong = http.post("/v1/jobs/email.send", json=EMAIL, headers=_bearer(FULL_KEY + "x"))
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "the API key is not valid")
        assert http.post("/v1/jobs", json={"jobs": [{"type": "email.send"}]}).status_code == 401
        assert http.get("/v1/jobs/some-id").status_code == 401
        # Health, readiness, metrics and the docs stay public.
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert http.get("/metrics").status_code == 200

        forbidden = http.post("/v1/jobs/image.resize", json=RESIZE, headers={"X-API-Key": MAIL_KEY})
        assert forbidden.status_code == 403
        assert forbidden.json()["detail"] == "API key 'mail' may not enqueue image.resize jobs"
        mixed = http.post(
            "/v1/jobs",
            json={
                "jobs": [
                    {"type": "email.send", "data": EMAIL},
                    {"type": "image.resize", "data": RESIZE},
                ]
            },
            headers=_bearer(MAIL_KEY),
        )
        assert mixed.status_code == 207
        assert [r["status"] for r in mixed.json()["results"]] == [202, 403]

        # The mail key's bucket (2 jobs) is spent: 429 with the wait until one job is back.
        limited = http.post("/v1/jobs/email.send", json=EMAIL, headers=_bearer(MAIL_KEY))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "rate limit of API key 'mail'" in limited.json()["detail"]

        ok = http.post("/v1/jobs/image.resize", json=RESIZE, headers=_bearer(FULL_KEY))
        assert ok.status_code == 202, ok.text
        assert http.get(ok.json()["status_url"], headers=_bearer(FULL_KEY)).status_code == 200
        assert http.get("/v1/jobs/unknown-id", headers=_bearer(FULL_KEY)).status_code == 404
        assert (
            http.post("/v1/jobs/video.encode", json={}, headers=_bearer(FULL_KEY)).status_code
            == 404
        )
        bad = http.post("/v1/jobs/image.resize", json={"width_px": 0}, headers=_bearer(FULL_KEY))
        assert bad.status_code == 422
        counted = _delta(before, _metrics(http))
    assert counted['conveyor_api_requests_rejected_total{reason="unauthorized"}'] == 4
    assert counted['conveyor_api_requests_rejected_total{reason="rate_limited"}'] == 1
    assert (
        counted['conveyor_api_jobs_rejected_total{job_type="image.resize",reason="forbidden"}'] == 2
    )
    assert (
        counted['conveyor_api_jobs_rejected_total{job_type="image.resize",reason="invalid"}'] == 1
    )
    assert counted['conveyor_api_jobs_accepted_total{duplicate="false",job_type="email.send"}'] == 1
    assert (
        counted['conveyor_api_jobs_accepted_total{duplicate="false",job_type="image.resize"}'] == 1
    )
    assert counted["conveyor_api_publish_seconds_count"] == 2
    assert counted['conveyor_api_batch_jobs_bucket{le="2.0"}'] == 1
    # Only the two accepted jobs were published.
    received = _collect(
        topology, {"notifications": {mixed.json()["results"][0]["id"]}, "images": {ok.json()["id"]}}
    )
    assert [decode(m["Body"]).id for m in received["notifications"]] == [
        mixed.json()["results"][0]["id"]
    ]
    assert [decode(m["Body"]).id for m in received["images"]] == [ok.json()["id"]]
    assert received["billing"] == []


# -- idempotency ----------------------------------------------------------------------------


def test_a_repeated_idempotency_key_publishes_nothing_new(
    keyed_api: Api, topology: Topology
) -> None:
    _collect(topology, {})  # start from empty queues: every message below is this test's
    batch = {
        "jobs": [{"type": "email.send", "data": EMAIL}, {"type": "image.resize", "data": RESIZE}]
    }
    with httpx.Client(base_url=keyed_api.url, timeout=30, headers=_bearer(FULL_KEY)) as http:
        before = _metrics(http)
        first = http.post(
            "/v1/jobs/email.send", json=EMAIL, headers={"Idempotency-Key": "welcome-1"}
        )
        again = http.post(
            "/v1/jobs/email.send", json=EMAIL, headers={"Idempotency-Key": "welcome-1"}
        )
        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json()["id"] == first.json()["id"]

        other = http.post(
            "/v1/jobs/email.send",
            json={**EMAIL, "subject": "something else"},
            headers={"Idempotency-Key": "welcome-1"},
        )
        assert other.status_code == 409
        assert (
            f"already used for a different job (job {first.json()['id']}" in other.json()["detail"]
        )

        batch_first = http.post("/v1/jobs", json=batch, headers={"Idempotency-Key": "import-9"})
        batch_again = http.post("/v1/jobs", json=batch, headers={"Idempotency-Key": "import-9"})
        assert (batch_first.status_code, batch_again.status_code) == (202, 202)
        ids = [r["id"] for r in batch_first.json()["results"]]
        assert [r["id"] for r in batch_again.json()["results"]] == ids
        assert [r.get("duplicate") for r in batch_again.json()["results"]] == [True, True]
        counted = _delta(before, _metrics(http))
    assert counted['conveyor_api_jobs_accepted_total{duplicate="true",job_type="email.send"}'] == 2
    assert counted['conveyor_api_jobs_rejected_total{job_type="email.send",reason="conflict"}'] == 1

    # Count what SNS delivered: each job once, nothing for the repeats or the conflict.
    received = _collect(
        topology, {"notifications": {first.json()["id"], ids[0]}, "images": {ids[1]}}
    )
    assert sorted(decode(m["Body"]).id for m in received["notifications"]) == sorted(
        [first.json()["id"], ids[0]]
    )
    assert [decode(m["Body"]).id for m in received["images"]] == [ids[1]]
    assert received["billing"] == []
    item = _idempotency_item(topology, "full", "welcome-1")  # scoped by the API key's name
    assert item is not None
    assert (item["job_id"], item["state"]) == (first.json()["id"], "published")


class _LoseFirstAnswer(httpx.HTTPTransport):
    """Real HTTP, but the first answer is read and then lost, as on a dropped connection."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.requests += 1
        if self.requests == 1:
            response.read()  # the API has answered: the job is published
            response.close()
            raise httpx.ReadTimeout("the answer was lost on the way back", request=request)
        return response


def test_the_client_retries_a_lost_answer_without_a_second_job(
    keyed_api: Api, topology: Topology
) -> None:
    _collect(topology, {})  # start from empty queues
    transport = _LoseFirstAnswer()
    with Client(keyed_api.url, FULL_KEY, transport=transport, sleep=lambda _s: None) as api:
        job = api.enqueue("email.send", EMAIL)  # no key given: the client makes one
    assert transport.requests == 2
    assert job.duplicate  # the second answer replays the first job
    received = _collect(topology, {"notifications": {job.id}})
    assert [decode(m["Body"]).id for m in received["notifications"]] == [job.id]


# -- SNS that never answers ---------------------------------------------------------------------


@pytest.fixture
def frozen_sns_api(env: dict[str, str], topology: Topology, tmp_path: Path) -> Iterator[Api]:
    """An API whose SNS endpoint accepts connections and never answers (a frozen SNS)."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)  # never accepted: connects succeed, requests are never read
        frozen = {
            **env,
            "AWS_ENDPOINT_URL_SNS": f"http://127.0.0.1:{blackhole.getsockname()[1]}",
            "CONVEYOR_AWS_ACCOUNT_ID": "123456789012",
            "CONVEYOR_API_AWS_READ_TIMEOUT_S": "1",
        }
        yield from _start_api(frozen, tmp_path / "api-frozen.log")


def test_an_sns_that_never_answers_is_503_and_nothing_is_recorded(
    frozen_sns_api: Api, topology: Topology
) -> None:
    headers = {"Idempotency-Key": "frozen-1"}
    with httpx.Client(base_url=frozen_sns_api.url, timeout=60) as http:
        single = http.post("/v1/jobs/order.placed", json=PAYLOADS["order.placed"], headers=headers)
        assert single.status_code == 503, single.text
        assert int(single.headers["retry-after"]) > 0
        # The request reached "SNS" and no answer came: the API cannot know it was not
        # published, and says so (the same key makes the retry the same job).
        assert single.json()["detail"].startswith(
            "job not confirmed: SNS did not answer (ReadTimeoutError)"
        )
        batch = http.post("/v1/jobs", json={"jobs": [{"type": "email.send", "data": EMAIL}] * 12})
        assert batch.status_code == 503
        assert "retry-after" in batch.headers
        assert {r["status"] for r in batch.json()["results"]} == {503}
        assert batch.json()["accepted"] == 0

        # The key was released (marked failed), so a retry publishes instead of 409...
        item = _idempotency_item(topology, "-", "frozen-1")
        assert item is not None
        assert item["state"] == "failed"
        retry = http.post("/v1/jobs/order.placed", json=PAYLOADS["order.placed"], headers=headers)
        assert retry.status_code == 503
        # ...and nothing was recorded as accepted: no ledger record for the job id.
        status = http.get(f"/v1/jobs/{item['job_id']}")
        assert status.status_code == 404, status.text
        assert frozen_sns_api.proc.poll() is None  # still serving


# -- the client and the CLI against the running API --------------------------------------------


def test_client_and_cli_end_to_end(
    keyed_api: Api, topology: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(keyed_api.url, FULL_KEY) as client:
        job = client.enqueue("image.resize", RESIZE, idempotency_key="c-1")
        assert job.queues == ["images"]
        assert client.enqueue("image.resize", RESIZE, idempotency_key="c-1").id == job.id
        results = client.enqueue_many(
            [{"type": "email.send", "data": EMAIL}, {"type": "email.send", "data": {}}]
        )
        assert [r.status for r in results] == [202, 422]
        assert "data.to: Field required" in (results[1].error or "")
        status = client.status(job.id)
        assert (status.id, status.type, status.state) == (job.id, "image.resize", "queued")
        assert status.queues["images"]["state"] == "queued"
    with Client(keyed_api.url, "cvy_wrong", retry=NO_RETRY) as client, pytest.raises(AuthError):
        client.enqueue("image.resize", RESIZE)

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(
            [
                json.dumps({"type": "email.send", "data": EMAIL}),
                "{not json",
                "",
                json.dumps({"type": "image.resize", "data": {"width_px": 3}}),
                json.dumps({"type": "order.placed", "data": PAYLOADS["order.placed"]}),
            ]
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("CONVEYOR_API_URL", keyed_api.url)
    monkeypatch.setenv("CONVEYOR_API_KEY", FULL_KEY)
    runner = CliRunner()
    run = runner.invoke(conveyor_cli, ["enqueue", "--batch", str(jobs)])
    assert run.exit_code == 1, run.output
    accepted = dict(line.split("\t") for line in run.stdout.splitlines())
    assert sorted(accepted) == ["1", "5"]
    assert "line 2: not valid JSON" in run.stderr
    assert "line 4: 422: data.image_url: Field required" in run.stderr
    assert "2 of 4 jobs accepted, 2 not" in run.stderr

    one = runner.invoke(conveyor_cli, ["enqueue", "email.send", "--data", json.dumps(EMAIL)])
    assert one.exit_code == 0, one.output
    show = runner.invoke(conveyor_cli, ["jobs", "show", accepted["5"]])
    assert show.exit_code == 0, show.output
    assert "order.placed" in show.stdout
    assert "billing" in show.stdout
    assert "notifications" in show.stdout
    assert "queued" in show.stdout
    as_json = runner.invoke(conveyor_cli, ["jobs", "show", accepted["5"], "--json"])
    assert json.loads(as_json.stdout)["id"] == accepted["5"]
    missing = runner.invoke(conveyor_cli, ["jobs", "show", "no-such-job"])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("conveyor: status unavailable: 404: no status recorded")
    monkeypatch.setenv("CONVEYOR_API_KEY", "cvy_wrong")
    refused = runner.invoke(conveyor_cli, ["enqueue", "email.send", "--data", json.dumps(EMAIL)])
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "conveyor: enqueue failed: 401: the API key is not valid"
    with pytest.raises(EnqueueError):
        Client(keyed_api.url, retry=NO_RETRY).enqueue("email.send", EMAIL)
