"""Hostile input, in process: the key is checked before the body, the body is bounded in size
and time, status is visible to its key only, /readyz is cached, errors name no resources.

The middlewares are driven through ASGI with fake ``receive`` callables that count what
is pulled; the app through FastAPI's TestClient with moto's in-process mock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from infra import aws
from infra.aws.names import ledger_table_name
from infra.ledger import QueuedJob, ledger_for
from infra.provision import apply
from infra.settings import ApiSettings
from infra.topology import Topology, load_topology
from producers import serve as serve_module
from producers.app import create_app
from producers.auth import ApiKey, KeyRing, KeysError, hash_key, parse_keys
from producers.gate import SCOPE_KEY, ApiKeyGate
from producers.limits import BodySizeLimit

REPO = Path(__file__).resolve().parents[2]
ORDER = {"order_id": "o-1", "customer_email": "ada@example.com", "amount": "12.50"}
ALPHA, BETA, OPS = "cvy_alpha-key-0123456789", "cvy_beta-key-0123456789", "cvy_ops-key-0123456789"
KEYS = [
    ApiKey("alpha", hash_key(ALPHA)),
    ApiKey("beta", hash_key(BETA)),
    ApiKey("ops", hash_key(OPS), scopes=frozenset({"admin"})),
]


# -- ASGI drivers ---------------------------------------------------------------------------


class _App:
    """An ASGI app that reads the whole body and answers 200; records what it saw."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.scopes: list[Scope] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scopes.append(scope)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


async def _drive(
    app: Any, scope: Scope, receive: Receive
) -> tuple[int, dict[str, str], dict[str, Any]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], headers, json.loads(body) if body else {}


class _EndlessBody:
    """A client that sends 64 KiB chunks forever; counts the bytes the server pulled."""

    CHUNK = b"[{}," * (16 * 1024)

    def __init__(self) -> None:
        self.pulled = 0

    async def __call__(self) -> Message:
        self.pulled += len(self.CHUNK)
        return {"type": "http.request", "body": self.CHUNK, "more_body": True}


async def _never_called() -> Message:
    raise AssertionError("the body was read")


# -- the size limit pulls no more than the limit -------------------------------------------


@pytest.mark.parametrize("limit", [0, 1000, 1_000_000])
def test_the_body_limit_never_pulls_more_than_the_limit_and_a_chunk(limit: int) -> None:
    app, client = _App(), _EndlessBody()
    status, headers, body = anyio.run(
        _drive, BodySizeLimit(app, max_body_bytes=limit), _scope("/", []), client
    )
    assert (status, headers["connection"]) == (413, "close")
    assert f"limit of {limit} bytes" in body["detail"]
    assert limit < client.pulled <= limit + len(_EndlessBody.CHUNK)
    assert app.bodies == []


def test_a_declared_length_above_the_limit_is_413_before_any_read() -> None:
    app = _App()
    scope = _scope("/", [(b"content-length", b"8000000")])
    status, _, _ = anyio.run(_drive, BodySizeLimit(app, max_body_bytes=1000), scope, _never_called)
    assert status == 413


def test_a_body_slower_than_the_deadline_is_408() -> None:
    app = _App()
    first = True

    async def trickle() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"{", "more_body": True}
        await anyio.sleep_forever()  # the rest never comes
        raise AssertionError("unreachable")

    limit = BodySizeLimit(app, max_body_bytes=1000, body_timeout_s=0.05)
    status, headers, body = anyio.run(_drive, limit, _scope("/", []), trickle)
    assert (status, headers["connection"]) == (408, "close")
    assert "did not arrive within 0.05 s" in body["detail"]
    assert app.bodies == []


def test_a_body_within_the_deadline_is_passed_on_whole() -> None:
    app = _App()
    chunks = iter([b"ab", b"cd", b""])

    async def receive() -> Message:
        chunk = next(chunks)
        return {"type": "http.request", "body": chunk, "more_body": chunk != b""}

    limit = BodySizeLimit(app, max_body_bytes=4, body_timeout_s=30)
    assert anyio.run(_drive, limit, _scope("/", []), receive)[0] == 200
    assert app.bodies == [b"abcd"]


# -- the key gate ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ([], "an API key is required (Authorization: Bearer <key>)"),
        ([(b"authorization", b"Bearer cvy_wrong")], "the API key is not valid"),
        ([(b"x-api-key", b"cvy_wrong")], "the API key is not valid"),
        ([(b"authorization", b"Basic " + ALPHA.encode())], "the API key is not valid"),
    ],
)
def test_a_request_without_a_valid_key_is_401_and_its_body_is_never_read(
    headers: list[tuple[bytes, bytes]], detail: str
) -> None:
    app, rejected = _App(), []
    gate = ApiKeyGate(app, KeyRing(KEYS), on_rejected=lambda: rejected.append(1))
    scope = _scope("/v1/jobs/email.send", [(b"content-length", b"8000000"), *headers])
    status, sent_headers, body = anyio.run(_drive, gate, scope, _never_called)
    assert (status, body["detail"]) == (401, detail)
    assert sent_headers["www-authenticate"] == "Bearer"
    assert sent_headers["connection"] == "close"  # the unread body: no waiting for it
    assert (app.scopes, rejected) == ([], [1])


def test_a_valid_key_goes_on_with_the_key_in_the_scope() -> None:
    app = _App()

    async def empty() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    for header in [(b"authorization", b"Bearer " + BETA.encode()), (b"x-api-key", BETA.encode())]:
        scope = _scope("/v1/jobs/email.send", [header])
        assert anyio.run(_drive, ApiKeyGate(app, KeyRing(KEYS)), scope, empty)[0] == 200
    assert [s[SCOPE_KEY].name for s in app.scopes] == ["beta", "beta"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_public_routes_need_no_key(path: str) -> None:
    app = _App()

    async def empty() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    assert anyio.run(_drive, ApiKeyGate(app, KeyRing(KEYS)), _scope(path, []), empty)[0] == 200
    assert SCOPE_KEY not in app.scopes[0]


def test_without_authentication_every_request_goes_on() -> None:
    app = _App()

    async def empty() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = _scope("/v1/jobs/email.send", [])
    assert anyio.run(_drive, ApiKeyGate(app, None), scope, empty)[0] == 200


def test_the_admin_scope_in_the_keys_file() -> None:
    text = (
        "keys:\n"
        f"  - {{name: ops, sha256: {hash_key(OPS)}, scopes: [admin]}}\n"
        f"  - {{name: alpha, sha256: {hash_key(ALPHA)}}}\n"
    )
    ops, alpha = parse_keys(text, source="keys.yaml")
    assert (ops.admin, alpha.admin) == (True, False)
    assert ops.may_read("alpha")
    assert ops.may_read(None)
    assert alpha.may_read("alpha")
    assert not alpha.may_read("beta")
    assert not alpha.may_read(None)
    with pytest.raises(KeysError, match=r"keys\.0\.scopes\.0"):
        parse_keys(f"keys: [{{name: x, sha256: {hash_key(OPS)}, scopes: [root]}}]", source="k")


# -- the app in process ------------------------------------------------------------------------


@pytest.fixture
def topology() -> Topology:
    return load_topology(REPO / "queues.yaml", environment="unit")


def _topic_probes() -> int:
    return aws.request_counts().get("sns.GetTopicAttributes", 0)


@pytest.mark.usefixtures("mocked_aws")
def test_readyz_asks_sns_once_per_topic_per_cache_window(topology: Topology) -> None:
    apply(topology)
    client = TestClient(create_app(topology, settings=ApiSettings(ready_cache_s=300)))
    before = _topic_probes()
    for _ in range(50):
        assert client.get("/readyz").status_code == 200
    assert _topic_probes() - before == len(topology.topics)

    # The counter does count: without the cache every call asks again.
    uncached = TestClient(create_app(topology, settings=ApiSettings(ready_cache_s=0)))
    before = _topic_probes()
    for _ in range(3):
        assert uncached.get("/readyz").status_code == 200
    assert _topic_probes() - before == 3 * len(topology.topics)


@pytest.mark.usefixtures("mocked_aws")
def test_readyz_during_an_outage_asks_sns_once_per_cache_window(topology: Topology) -> None:
    # Nothing provisioned: every probe fails, and the failure is what gets cached.
    client = TestClient(create_app(topology, settings=ApiSettings(ready_cache_s=300)))
    before = _topic_probes()
    for _ in range(50):
        assert client.get("/readyz").status_code == 503
    assert 1 <= _topic_probes() - before <= len(topology.topics)


@pytest.mark.usefixtures("mocked_aws")
def test_job_status_is_shown_to_its_key_and_admin_keys_only(topology: Topology) -> None:
    apply(topology)
    client = TestClient(create_app(topology, keys=KEYS))
    enqueued = client.post("/v1/jobs/order.placed", json=ORDER, headers={"X-API-Key": ALPHA})
    assert enqueued.status_code == 202, enqueued.text
    url = enqueued.json()["status_url"]
    assert client.get(url, headers={"X-API-Key": ALPHA}).status_code == 200
    assert client.get(url, headers={"X-API-Key": OPS}).status_code == 200
    other = client.get(url, headers={"X-API-Key": BETA})
    unknown = client.get("/v1/jobs/no-such-job", headers={"X-API-Key": BETA})
    assert (other.status_code, unknown.status_code) == (404, 404)
    job_id = enqueued.json()["id"]
    assert other.json()["detail"].replace(job_id, "ID") == unknown.json()["detail"].replace(
        "no-such-job", "ID"
    )
    assert client.get(url).status_code == 401

    # The ledger holds the key's name, never the key or its hash.
    item = aws.client("dynamodb").get_item(
        TableName=ledger_table_name(topology), Key={"pk": {"S": f"job#{job_id}"}}
    )["Item"]
    assert item["key_name"] == {"S": "alpha"}
    assert ALPHA not in json.dumps(item)
    assert hash_key(ALPHA) not in json.dumps(item)
    assert "key_name" not in client.get(url, headers={"X-API-Key": ALPHA}).json()

    # A job recorded before records named their key: admin keys only.
    ledger = ledger_for(topology)
    assert ledger is not None
    ledger.record_queued([QueuedJob("legacy-1", "order.placed", ["orders"])])
    assert client.get("/v1/jobs/legacy-1", headers={"X-API-Key": ALPHA}).status_code == 404
    assert client.get("/v1/jobs/legacy-1", headers={"X-API-Key": OPS}).status_code == 200


@pytest.mark.usefixtures("mocked_aws")
def test_without_authentication_every_status_is_visible(topology: Topology) -> None:
    apply(topology)
    client = TestClient(create_app(topology))
    enqueued = client.post("/v1/jobs/order.placed", json=ORDER)
    assert client.get(enqueued.json()["status_url"]).status_code == 200


@pytest.mark.usefixtures("mocked_aws")
@pytest.mark.parametrize(
    ("job_id", "status"), [("a" * 129, 422), ("a" * 4000, 422), ("a" * 128, 404)]
)
def test_a_job_id_no_job_can_have_is_422(topology: Topology, job_id: str, status: int) -> None:
    apply(topology)
    client = TestClient(create_app(topology, keys=KEYS))
    assert client.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": ALPHA}).status_code == status


@pytest.mark.usefixtures("mocked_aws")
def test_error_bodies_name_no_table_topic_or_arn(topology: Topology) -> None:
    # Nothing provisioned: the ledger's and the idempotency keys' tables and the topics
    # are missing; the answers say what to run, the log says which resource.
    client = TestClient(create_app(topology))
    answers = [
        client.get("/v1/jobs/abc"),
        client.get("/readyz"),
        client.post("/v1/jobs/order.placed", json=ORDER),
        client.post("/v1/jobs/order.placed", json=ORDER, headers={"Idempotency-Key": "k-1"}),
    ]
    assert [a.status_code for a in answers] == [503] * 4
    names = [
        ledger_table_name(topology),
        topology.resource_name("idempotency"),
        *(topology.topic_name(t) for t in topology.topics),
        "arn:",
        "123456789012",  # moto's account
    ]
    for answer in answers:
        assert "conveyor infra apply" in answer.json()["detail"], answer.text
        assert not [n for n in names if n in answer.text], answer.text


def test_uvicorn_runs_with_the_configured_limits(
    topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(serve_module.uvicorn, "run", lambda app, **kw: seen.update(kw))
    settings = ApiSettings(
        max_concurrency=7, keep_alive_timeout_s=3, max_header_bytes=4096, header_timeout_s=2.5
    )
    serve_module.serve(topology, settings=settings)
    assert seen["limit_concurrency"] == 7
    assert seen["timeout_keep_alive"] == 3
    assert seen["h11_max_incomplete_event_size"] == 4096
    assert issubclass(seen["http"], serve_module.HeaderDeadlineProtocol)
    assert seen["http"].header_timeout_s == 2.5
