"""Hostile clients against a real ``conveyor api`` process (uvicorn), over raw sockets.

A request without a key is refused before its body is sent; a body above the limit
is refused while it is still arriving; a body trickling in slower than the deadline
is cut off with 408; another key's job is as unknown as an id that never existed;
answers name no AWS resource; ids no job can have are 4xx.
"""

from __future__ import annotations

import json
import select
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest

from infra import aws
from infra.aws.names import ledger_table_name
from infra.emulator import EmulatorProcess
from infra.provision import apply
from infra.topology import Topology, load_topology
from producers.auth import hash_key
from tests.integration.test_api_http import PAYLOADS, QUEUES_FILE, _start_api
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.processes import Api

pytestmark = pytest.mark.integration

ALPHA = "cvy_alpha-key-for-hostile-tests-0123456789"
BETA = "cvy_beta-key-for-hostile-tests-0123456789"
OPS = "cvy_ops-key-for-hostile-tests-0123456789"
#: The keyed API's limits: small, so that the tests send little.
MAX_BODY_BYTES = 64 * 1024
BODY_TIMEOUT_S = 1.0
HEADER_TIMEOUT_S = 1.0
#: How long a test waits for an answer that must come (a deadline, not a pace).
ANSWER_DEADLINE_S = 20.0
#: The trickling client's pace: one byte, then this long watching for the answer.
TRICKLE_PAUSE_S = 0.2


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    #: The server closed the connection after the answer.
    closed: bool

    def json(self) -> dict[str, object]:
        parsed: dict[str, object] = json.loads(self.body)
        return parsed


def _connect(api: Api) -> socket.socket:
    url = urlsplit(api.url)
    sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 80))
    sock.settimeout(ANSWER_DEADLINE_S)
    return sock


def _head(path: str, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: api", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _read_answer(sock: socket.socket) -> Answer:
    """The response on ``sock``; fails the test if none comes within the deadline."""
    data = b""
    deadline = time.monotonic() + ANSWER_DEADLINE_S
    closed = False
    while time.monotonic() < deadline:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:])
            }
            length = int(headers.get("content-length", "0"))
            if len(rest) >= length:
                if not closed:
                    sock.settimeout(2.0)  # is the connection closed after the answer?
                    try:
                        closed = sock.recv(1) == b""
                    except TimeoutError:
                        closed = False
                    except ConnectionError:
                        closed = True
                return Answer(int(lines[0].split()[1]), headers, rest[:length], closed)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            closed = True
            if not sep:
                break
        data += chunk
    pytest.fail(f"no complete answer within {ANSWER_DEADLINE_S:g}s (got {data[:200]!r})")


def _answered(sock: socket.socket, wait_s: float) -> bool:
    readable, _, _ = select.select([sock], [], [], wait_s)
    return bool(readable)


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
def api(
    env: dict[str, str], topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """A keyed API with a small body limit and a short body deadline."""
    tmp = tmp_path_factory.mktemp("hostile-api")
    keys = tmp / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - {{name: alpha, sha256: {hash_key(ALPHA)}}}\n"
        f"  - {{name: beta, sha256: {hash_key(BETA)}}}\n"
        f"  - {{name: ops, sha256: {hash_key(OPS)}, scopes: [admin]}}\n",
        encoding="utf-8",
    )
    api_env = {
        **env,
        "CONVEYOR_API_AUTH": "keys",
        "CONVEYOR_API_KEYS_FILE": str(keys),
        "CONVEYOR_API_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "CONVEYOR_API_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "CONVEYOR_API_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    }
    yield from _start_api(api_env, tmp / "api.log")


@dataclass
class BareApi:
    api: Api
    topology: Topology


@pytest.fixture(scope="module")
def bare_api(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[BareApi]:
    """An API whose environment has no topics and no tables (nothing provisioned)."""
    tmp = tmp_path_factory.mktemp("bare-api")
    environment = f"t{uuid.uuid4().hex[:10]}"
    bare = load_topology(QUEUES_FILE, environment=environment)
    for api in _start_api({**env, "CONVEYOR_ENVIRONMENT": environment}, tmp / "api.log"):
        yield BareApi(api, bare)


# -- (a) no key: 401 before the body ----------------------------------------------------------


def test_no_key_is_401_before_the_body_is_sent(api: Api) -> None:
    with _connect(api) as sock:
        headers = {"Content-Type": "application/json", "Content-Length": "8000000"}
        sock.sendall(_head("/v1/jobs/email.send", headers))
        answer = _read_answer(sock)  # not one byte of the body was sent
    assert answer.status == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.headers["connection"] == "close"
    assert answer.closed  # the server does not wait for the body


def test_a_wrong_key_is_401_before_the_body_is_sent(api: Api) -> None:
    with _connect(api) as sock:
        headers = {"Content-Length": "8000000", "Authorization": f"Bearer {ALPHA}x"}
        sock.sendall(_head("/v1/jobs/email.send", headers))
        answer = _read_answer(sock)
    assert (answer.status, answer.json()["detail"]) == (401, "the API key is not valid")


# -- (b) a body above the limit: 413 while it is arriving -------------------------------------


def test_a_declared_length_above_the_limit_is_413_before_the_body(api: Api) -> None:
    with _connect(api) as sock:
        headers = {"Content-Length": "8000000", "X-API-Key": ALPHA}
        sock.sendall(_head("/v1/jobs/email.send", headers))
        answer = _read_answer(sock)
    assert answer.status == 413
    assert f"limit of {MAX_BODY_BYTES} bytes" in answer.json()["detail"]


def test_a_chunked_body_above_the_limit_is_413_before_it_ends(api: Api) -> None:
    with _connect(api) as sock:
        headers = {"Transfer-Encoding": "chunked", "X-API-Key": ALPHA}
        sock.sendall(_head("/v1/jobs/email.send", headers))
        # One byte more than the limit, in 4 KiB chunks; the body's end (the last,
        # empty chunk) is never sent: the answer can only come from the limit.
        sent = 0
        while sent <= MAX_BODY_BYTES:
            chunk = b"x" * min(4096, MAX_BODY_BYTES + 1 - sent)
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        answer = _read_answer(sock)
    assert answer.status == 413
    assert answer.closed


# -- (c) a body slower than the deadline: 408 --------------------------------------------------


def test_a_trickling_body_is_cut_off_with_408(api: Api) -> None:
    body = json.dumps(PAYLOADS["email.send"]).encode()
    with _connect(api) as sock:
        headers = {"Content-Length": str(len(body)), "X-API-Key": ALPHA}
        sock.sendall(_head("/v1/jobs/email.send", headers))
        sent = 0
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        # One byte per pause until the server answers; the body is never complete.
        while sent < len(body) - 1 and time.monotonic() < deadline:
            sock.sendall(body[sent : sent + 1])
            sent += 1
            if _answered(sock, TRICKLE_PAUSE_S):
                break
        answer = _read_answer(sock)
    assert sent < len(body)
    assert answer.status == 408, answer.body
    assert f"within {BODY_TIMEOUT_S:g} s" in answer.json()["detail"]
    assert answer.closed


def test_trickling_headers_are_disconnected(api: Api) -> None:
    head = _head("/v1/jobs/email.send", {"X-API-Key": ALPHA, "X-Padding": "p" * 200})
    with _connect(api) as sock:
        sent = 0
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        # One byte per pause; the head is never complete.
        while sent < len(head) - 1 and time.monotonic() < deadline:
            try:
                sock.sendall(head[sent : sent + 1])
            except ConnectionError:
                break  # closed while we were sending
            sent += 1
            if _answered(sock, TRICKLE_PAUSE_S):
                break
        assert sent < len(head) - 1, "the server waited for the whole head"
        try:
            got = sock.recv(1024)
        except ConnectionError:
            got = b""
    assert got == b""  # closed, without an answer


# -- (d) invalid JSON without a key: 401, not 422 ---------------------------------------------


def test_invalid_json_without_a_key_is_401(api: Api) -> None:
    with httpx.Client(base_url=api.url, timeout=ANSWER_DEADLINE_S) as http:
        headers = {"Content-Type": "application/json"}
        assert (
            http.post("/v1/jobs/email.send", content=b"{nope", headers=headers).status_code == 401
        )
        assert http.post("/v1/jobs", content=b"[{},{}", headers=headers).status_code == 401
        keyed = http.post(
            "/v1/jobs/email.send", content=b"{nope", headers={**headers, "X-API-Key": ALPHA}
        )
        assert keyed.status_code == 422


# -- (e) status: the enqueuing key and admin keys only -----------------------------------------


def test_another_keys_job_is_404_and_admin_sees_it(api: Api, topology: Topology) -> None:
    with httpx.Client(base_url=api.url, timeout=ANSWER_DEADLINE_S) as http:
        ok = http.post(
            "/v1/jobs/order.placed", json=PAYLOADS["order.placed"], headers={"X-API-Key": ALPHA}
        )
        assert ok.status_code == 202, ok.text
        job_id, url = ok.json()["id"], ok.json()["status_url"]
        assert http.get(url, headers={"X-API-Key": ALPHA}).status_code == 200
        admin = http.get(url, headers={"X-API-Key": OPS})
        assert (admin.status_code, admin.json()["id"]) == (200, job_id)
        other = http.get(url, headers={"X-API-Key": BETA})
        unknown = http.get(f"/v1/jobs/{uuid.uuid4()}", headers={"X-API-Key": BETA})
        assert (other.status_code, unknown.status_code) == (404, 404)
        assert set(other.json()) == set(unknown.json()) == {"detail"}
        assert "alpha" not in other.text
    item = aws.client("dynamodb").get_item(
        TableName=ledger_table_name(topology),
        Key={"pk": {"S": f"job#{job_id}"}},
        ConsistentRead=True,
    )["Item"]
    assert item["key_name"] == {"S": "alpha"}


# -- (g) answers name no AWS resource -----------------------------------------------------------


def test_503_bodies_name_no_table_topic_or_arn(bare_api: BareApi) -> None:
    with httpx.Client(base_url=bare_api.api.url, timeout=ANSWER_DEADLINE_S) as http:
        answers = [
            http.get("/v1/jobs/some-id"),  # the ledger's table is missing
            http.get("/readyz"),  # the topics are missing
            http.post("/v1/jobs/order.placed", json=PAYLOADS["order.placed"]),
            http.post(  # the idempotency keys' table is missing
                "/v1/jobs/order.placed",
                json=PAYLOADS["order.placed"],
                headers={"Idempotency-Key": "bare-1"},
            ),
        ]
    assert [a.status_code for a in answers] == [503] * 4, [a.text for a in answers]
    bare = bare_api.topology
    names = [
        ledger_table_name(bare),
        bare.resource_name("idempotency"),
        *(bare.topic_name(t) for t in bare.topics),
        bare.environment,
        "arn:",
    ]
    for answer in answers:
        assert "conveyor infra apply" in answer.text, answer.text
        assert [n for n in names if n in answer.text] == [], answer.text
    # The log has what the answers leave out.
    assert ledger_table_name(bare) in bare_api.api.text()


# -- (h) ids no job can have ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("job_id", "status"), [("a" * 129, 422), ("b" * 8000, 422), ("c" * 128, 404)]
)
def test_an_over_long_job_id_is_4xx(api: Api, job_id: str, status: int) -> None:
    with httpx.Client(base_url=api.url, timeout=ANSWER_DEADLINE_S) as http:
        answer = http.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": OPS})
    assert answer.status_code == status, answer.text
