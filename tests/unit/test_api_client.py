"""The producer API's Python client, its CLI commands and its request body limit, in process."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import typer
from starlette.types import Message, Receive, Scope, Send
from typer.testing import CliRunner

from conveyor.cli.api import register
from conveyor.cli.batch import parse_line
from producers.auth import hash_key, parse_keys
from producers.client import (
    NO_RETRY,
    AuthError,
    Client,
    ConveyorClient,
    EnqueueError,
    EnqueueResult,
    NotFoundError,
    Retry,
    WaitTimeoutError,
)
from producers.limits import BodySizeLimit

ACCEPTED = {
    "id": "j-1",
    "type": "image.resize",
    "status_url": "/v1/jobs/j-1",
    "queues": ["images"],
}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _client(handler: Any, *, sleeps: list[float] | None = None, **kwargs: Any) -> ConveyorClient:
    """A client of ``handler``; its waits between retries are recorded, not slept."""
    return ConveyorClient(
        "http://api.test/",
        transport=httpx.MockTransport(handler),
        sleep=(sleeps if sleeps is not None else []).append,
        **kwargs,
    )


# -- ConveyorClient ---------------------------------------------------------------------------


def test_enqueue_posts_the_payload_and_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=ACCEPTED, headers={"Location": "/v1/jobs/j-1"})

    with _client(handler) as api:
        result = api.enqueue(
            "image.resize",
            {"width_px": 1},
            idempotency_key="k-1",
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
    assert result == EnqueueResult("j-1", "image.resize", "/v1/jobs/j-1", ["images"])
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "http://api.test/v1/jobs/image.resize"
    assert json.loads(request.content) == {"width_px": 1}
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["traceparent"].startswith("00-0af7")


def test_enqueue_renders_field_errors() -> None:
    detail = [
        {"loc": ["body", "width_px"], "msg": "Input should be greater than 0", "type": "x"},
        {"loc": ["body", "image_url"], "msg": "Field required", "type": "missing"},
    ]
    with (
        _client(lambda _: httpx.Response(422, json={"detail": detail})) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {"width_px": 0})
    assert caught.value.status_code == 422
    assert caught.value.detail == (
        "width_px: Input should be greater than 0; image_url: Field required"
    )
    assert caught.value.body == {"detail": detail}
    assert caught.value.retry_after_s is None


def test_enqueue_keeps_retry_after_of_a_503() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(
            503,
            json={"detail": "job not published: SNS is unreachable"},
            headers={"Retry-After": "5"},
        )

    with _client(handler, retry=NO_RETRY) as api, pytest.raises(EnqueueError) as caught:
        api.enqueue("image.resize", {})
    assert (caught.value.status_code, caught.value.retry_after_s) == (503, 5.0)
    assert caught.value.detail == "job not published: SNS is unreachable"


def test_503_and_429_are_retried_after_retry_after() -> None:
    answers = [
        httpx.Response(503, json={"detail": "x"}, headers={"Retry-After": "5"}),
        httpx.Response(429, json={"detail": "slow down"}, headers={"Retry-After": "2"}),
        httpx.Response(202, json=ACCEPTED),
    ]
    sleeps: list[float] = []
    with _client(lambda _: answers.pop(0), sleeps=sleeps) as api:
        assert api.enqueue("image.resize", {}).id == "j-1"
    assert sleeps == [5.0, 2.0]


def test_retries_are_bounded_by_attempts_and_time() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"detail": "down"}, headers={"Retry-After": "1"})

    with _client(handler, retry=Retry(max_attempts=3)) as api, pytest.raises(EnqueueError):
        api.enqueue("image.resize", {})
    assert len(calls) == 3
    calls.clear()
    with (
        _client(handler, retry=Retry(max_attempts=10, max_wait_s=0.5)) as api,
        pytest.raises(EnqueueError),
    ):
        api.enqueue("image.resize", {})
    assert len(calls) == 1  # waiting 1 s would pass the 0.5 s budget


@pytest.mark.parametrize(
    ("status", "kind"), [(401, AuthError), (403, AuthError), (404, NotFoundError)]
)
def test_refusals_raise_at_once_with_a_clear_type(status: int, kind: type[Exception]) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, json={"detail": "no"})

    with _client(handler) as api, pytest.raises(kind):
        api.enqueue("image.resize", {})
    assert len(calls) == 1


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, json=ACCEPTED)

    with Client("http://api.test", "cvy_secret", transport=httpx.MockTransport(handler)) as api:
        api.enqueue("image.resize", {})
    assert seen[0].headers["authorization"] == "Bearer cvy_secret"


def test_enqueue_many_resends_only_the_jobs_answered_503() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        jobs = json.loads(request.content)["jobs"]
        bodies.append(jobs)
        if len(bodies) == 1:
            results = [
                {"index": 0, "status": 202, "id": "a", "type": "t", "queues": ["q"]},
                {"index": 1, "status": 503, "error": "SNS down", "retry_after_s": 1},
                {"index": 2, "status": 422, "error": "data.x: Field required"},
            ]
            return httpx.Response(
                207,
                json={"accepted": 1, "rejected": 2, "results": results},
                headers={"Retry-After": "1"},
            )
        results = [{"index": 0, "status": 202, "id": "b", "type": "t", "queues": ["q"]}]
        return httpx.Response(202, json={"accepted": 1, "rejected": 0, "results": results})

    sleeps: list[float] = []
    jobs = [{"type": "t", "data": {"n": i}} for i in range(3)]
    with _client(handler, sleeps=sleeps) as api:
        results = api.enqueue_many(jobs, idempotency_key="run-7")
    assert [(r.index, r.status, r.id) for r in results] == [
        (0, 202, "a"),
        (1, 202, "b"),
        (2, 422, None),
    ]
    assert results[2].error == "data.x: Field required"
    assert bodies[1] == [{"type": "t", "data": {"n": 1}, "idempotency_key": "run-7-1"}]
    assert sleeps == [1.0]


def test_enqueue_many_splits_into_requests_of_500() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        jobs = json.loads(request.content)["jobs"]
        sizes.append(len(jobs))
        results = [{"index": i, "status": 202, "id": f"j{i}"} for i in range(len(jobs))]
        return httpx.Response(202, json={"accepted": len(jobs), "rejected": 0, "results": results})

    with _client(handler) as api:
        results = api.enqueue_many([{"type": "t", "data": {}}] * 1201)
    assert sizes == [500, 500, 201]
    assert [r.index for r in results] == list(range(1201))


def test_status_and_wait() -> None:
    states = ["queued", "running", "succeeded"]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/jobs/missing":
            return httpx.Response(404, json={"detail": "no status recorded"})
        state = states.pop(0) if len(states) > 1 else states[0]
        return httpx.Response(
            200,
            json={"id": "j-1", "type": "t", "state": state, "queues": {"q": {"state": state}}},
        )

    sleeps: list[float] = []
    with _client(handler, sleeps=sleeps) as api:
        with pytest.raises(NotFoundError):
            api.status("missing")
        done = api.wait("j-1", timeout_s=30, poll_s=0.01)
        assert (done.id, done.type, done.state, done.done) == ("j-1", "t", "succeeded", True)
        assert done.queues == {"q": {"state": "succeeded"}}
        assert len(sleeps) == 2
        with pytest.raises(WaitTimeoutError, match="not done after"):
            api.wait("missing", timeout_s=0)


def test_enqueue_survives_a_non_json_error() -> None:
    with (
        _client(lambda _: httpx.Response(502, text="<html>bad gateway</html>")) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {})
    assert caught.value.status_code == 502
    assert caught.value.detail == "Bad Gateway"


def test_enqueue_to_an_unreachable_api_has_no_status() -> None:
    sleeps: list[float] = []
    with (
        ConveyorClient(
            f"http://127.0.0.1:{_closed_port()}", timeout_s=5, sleep=sleeps.append
        ) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {})
    assert caught.value.status_code is None
    assert "cannot reach" in caught.value.detail
    assert len(sleeps) == 4  # a refused connection never sent the job: retried, then given up


def test_a_job_without_a_key_gets_one_so_a_lost_answer_is_retried_safely() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(202, json=ACCEPTED)

    with _client(handler) as api:
        assert api.enqueue("image.resize", {}).id == "j-1"
    first, second = (r.headers["Idempotency-Key"] for r in seen)
    assert first == second
    assert first.startswith("auto-")


def test_without_a_key_a_lost_answer_is_not_sent_again() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("the answer was lost", request=request)

    with (
        _client(handler, auto_idempotency_keys=False) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {})
    assert caught.value.status_code is None
    assert "may or may not have been enqueued" in caught.value.detail
    assert len(seen) == 1  # a second copy could be a second job
    assert "Idempotency-Key" not in seen[0].headers


def test_409_in_progress_is_retried_and_a_conflict_is_not() -> None:
    in_progress = httpx.Response(
        409, json={"detail": "being processed (retry later)"}, headers={"Retry-After": "1"}
    )
    answers = [in_progress, httpx.Response(202, json=ACCEPTED)]
    sleeps: list[float] = []
    with _client(lambda _: answers.pop(0), sleeps=sleeps) as api:
        assert api.enqueue("image.resize", {}, idempotency_key="k").id == "j-1"
    assert sleeps == [1.0]

    conflict = httpx.Response(409, json={"detail": "already used for a different job"})
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return conflict

    with _client(refuse) as api, pytest.raises(EnqueueError) as caught:
        api.enqueue("image.resize", {}, idempotency_key="k")
    assert (caught.value.status_code, len(calls)) == (409, 1)


def test_enqueue_many_gives_every_job_its_own_key() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        jobs = json.loads(request.content)["jobs"]
        seen.extend(jobs)
        results = [{"index": i, "status": 202, "id": f"j-{i}"} for i in range(len(jobs))]
        return httpx.Response(202, json={"accepted": len(jobs), "rejected": 0, "results": results})

    with _client(handler) as api:
        api.enqueue_many(
            [{"type": "email.send", "data": {}}] * 3
            + [{"type": "email.send", "data": {}, "idempotency_key": "mine"}]
        )
    keys = [job["idempotency_key"] for job in seen]
    assert keys[3] == "mine"
    assert len(set(keys[:3])) == 3
    assert all(k.startswith("auto-") for k in keys[:3])


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_cli_enqueue_refuses_invalid_json(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "image.resize", "{oops"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_cli_enqueue_refuses_a_non_object(cli: typer.Typer) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "image.resize", "[1]"])
    assert result.exit_code == 2
    assert "must be a JSON object" in result.output


def test_cli_enqueue_to_an_unreachable_api_exits_1(cli: typer.Typer) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(cli, ["enqueue", "image.resize", "{}", "--api-url", url])
    assert result.exit_code == 1
    assert "cannot reach" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_api_refuses_payload_models_that_do_not_import(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queues = tmp_path / "queues.yaml"
    queues.write_text(
        """
topics: {media: {}}
queues: {images: {subscriptions: [{topic: media}]}}
job_types:
  image.resize: {topic: media, payload: "nowhere.models:Resize", handler: "nowhere.jobs:run"}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(queues))
    result = CliRunner().invoke(cli, ["api", "--port", "0"])
    assert result.exit_code == 2
    assert "job_types.image.resize.payload: cannot import 'nowhere.models:Resize'" in result.output
    assert result.output.startswith(f"{queues}: ")
    assert "handler" not in result.output  # the API never runs handlers


def test_cli_api_needs_keys_unless_auth_is_off(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(Path(__file__).parents[2] / "queues.yaml"))
    monkeypatch.delenv("CONVEYOR_API_AUTH", raising=False)
    monkeypatch.delenv("CONVEYOR_API_KEYS", raising=False)
    monkeypatch.delenv("CONVEYOR_API_KEYS_FILE", raising=False)
    result = CliRunner().invoke(cli, ["api", "--port", "0"])
    assert result.exit_code == 2
    assert "needs API keys" in result.output
    assert "CONVEYOR_API_AUTH=none" in result.output

    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {name: ci, sha256: nothex, job_types: [video.encode]}\n")
    monkeypatch.setenv("CONVEYOR_API_KEYS_FILE", str(keys))
    result = CliRunner().invoke(cli, ["api", "--port", "0"])
    assert result.exit_code == 2
    assert result.output.startswith(f"conveyor: {keys}: keys.0.sha256: String should match")


def test_cli_api_keys_create_prints_a_key_and_its_entry(cli: typer.Typer) -> None:
    result = CliRunner().invoke(
        cli, ["api", "keys", "create", "checkout", "--job-type", "order.placed"]
    )
    assert result.exit_code == 0, result.output
    key = result.stderr.strip().rsplit(" ", 1)[-1]
    assert key.startswith("cvy_")
    [entry] = parse_keys(f"keys:\n{result.stdout}", source="stdout")
    assert (entry.name, entry.sha256, entry.job_types) == (
        "checkout",
        hash_key(key),
        frozenset({"order.placed"}),
    )
    hashed = CliRunner().invoke(cli, ["api", "keys", "hash", key])
    assert hashed.stdout.strip() == hash_key(key)
    bad = CliRunner().invoke(cli, ["api", "keys", "create", "no spaces"])
    assert bad.exit_code == 2


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type": "t", "data": {"a": 1}}', {"type": "t", "data": {"a": 1}}),
        ('{"type": "t"}', {"type": "t", "data": {}}),
        ("{oops", "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('{"data": {}}', 'no "type"'),
        ('{"type": "t", "data": [1]}', '"data" must be a JSON object'),
        ('{"type": "t", "payload": {}}', "unknown field(s): payload"),
    ],
)
def test_batch_lines(line: str, expected: Any) -> None:
    parsed = parse_line(line)
    if isinstance(expected, dict):
        assert parsed == expected
    else:
        assert isinstance(parsed, str)
        assert expected in parsed


def test_cli_api_refuses_a_broken_topology(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_QUEUES_FILE", str(tmp_path / "missing.yaml"))
    result = CliRunner().invoke(cli, ["api"])
    assert result.exit_code == 2
    assert "file not found" in result.output


# -- BodySizeLimit, driven through ASGI with a body in several chunks ---------------------------


def _receive(chunks: list[bytes]) -> Receive:
    messages: Iterator[Message] = iter(
        [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
    )

    async def receive() -> Message:
        return next(messages, {"type": "http.disconnect"})

    return receive


async def _run(
    limit: int, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes | None]:
    received: list[bytes] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        received.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    await BodySizeLimit(app, max_body_bytes=limit)(scope, _receive(chunks), send)
    return sent[0]["status"], received[0] if received else None


@pytest.mark.parametrize(
    ("limit", "headers", "status", "passed_on"),
    [
        (300, [], 200, b"a" * 100 + b"b" * 100 + b"c" * 100),
        (299, [], 413, None),
        (300, [(b"content-length", b"300")], 200, b"a" * 100 + b"b" * 100 + b"c" * 100),
        (299, [(b"content-length", b"300")], 413, None),
        (300, [(b"content-length", b"nope")], 400, None),
    ],
)
def test_body_size_limit(
    limit: int, headers: list[tuple[bytes, bytes]], status: int, passed_on: bytes | None
) -> None:
    chunks = [b"a" * 100, b"b" * 100, b"c" * 100]
    assert anyio.run(_run, limit, chunks, headers) == (status, passed_on)
