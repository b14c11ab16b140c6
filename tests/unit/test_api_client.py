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
from producers.client import ConveyorClient, EnqueueError, EnqueueResult
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


def _client(handler: Any) -> ConveyorClient:
    return ConveyorClient("http://api.test/", transport=httpx.MockTransport(handler))


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

    with _client(handler) as api, pytest.raises(EnqueueError) as caught:
        api.enqueue("image.resize", {})
    assert (caught.value.status_code, caught.value.retry_after_s) == (503, 5.0)
    assert caught.value.detail == "job not published: SNS is unreachable"


def test_enqueue_survives_a_non_json_error() -> None:
    with (
        _client(lambda _: httpx.Response(502, text="<html>bad gateway</html>")) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {})
    assert caught.value.status_code == 502
    assert caught.value.detail == "Bad Gateway"


def test_enqueue_to_an_unreachable_api_has_no_status() -> None:
    with (
        ConveyorClient(f"http://127.0.0.1:{_closed_port()}", timeout_s=5) as api,
        pytest.raises(EnqueueError) as caught,
    ):
        api.enqueue("image.resize", {})
    assert caught.value.status_code is None
    assert "cannot reach" in caught.value.detail


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
