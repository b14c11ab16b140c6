"""The client's and the CLI's delays: ``delay_s`` / ``not_before``, ``--delay`` / ``--at``.

The API is an ``httpx.MockTransport``: these tests check what is sent and how the
answer is read, not the API (tests/unit/test_api_delay.py does that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli import api as cli_api
from producers.client import Client

DUE = "2026-12-06T12:10:00.123000Z"


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1/jobs":
        jobs = json.loads(request.content)["jobs"]
        results = [
            {"index": i, "status": 202, "id": f"j-{i}", "type": j["type"], "due_at": DUE}
            for i, j in enumerate(jobs)
        ]
        return httpx.Response(202, json={"accepted": len(jobs), "rejected": 0, "results": results})
    body = {"id": "j-1", "type": "note.send", "status_url": "/v1/jobs/j-1", "queues": []}
    return httpx.Response(202, json={**body, "due_at": DUE})


@pytest.fixture
def seen() -> list[httpx.Request]:
    return []


@pytest.fixture
def client(seen: list[httpx.Request]) -> Iterator[Client]:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    with Client("http://api.test", None, transport=httpx.MockTransport(handler)) as api:
        yield api


def test_enqueue_sends_the_delay_as_query_parameters(
    client: Client, seen: list[httpx.Request]
) -> None:
    result = client.enqueue("note.send", {"label": "x"}, delay_s=600)
    assert seen[-1].url.params["delay_s"] == "600"
    assert result.due_at == datetime(2026, 12, 6, 12, 10, 0, 123000, tzinfo=UTC)
    when = datetime(2026, 12, 24, 18, 0, tzinfo=timezone(timedelta(hours=1)))
    client.enqueue("note.send", {"label": "x"}, not_before=when)
    # The "+" of the offset is encoded: a bare "+" would reach the API as a space.
    assert "not_before=2026-12-24T18%3A00%3A00%2B01%3A00" in str(seen[-1].url)
    assert seen[-1].url.params["not_before"] == "2026-12-24T18:00:00+01:00"
    client.enqueue("note.send", {"label": "x"})
    assert "delay_s" not in seen[-1].url.params


def test_enqueue_many_delays_the_jobs_without_their_own(
    client: Client, seen: list[httpx.Request]
) -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    results = client.enqueue_many(
        [
            {"type": "note.send", "data": {}},
            {"type": "note.send", "data": {}, "delay_s": 5},
            {"type": "note.send", "data": {}, "not_before": when},
        ],
        delay_s=60,
    )
    jobs = json.loads(seen[-1].content)["jobs"]
    assert [j.get("delay_s") for j in jobs] == [60, 5, None]
    assert jobs[2]["not_before"] == "2030-01-01T00:00:00+00:00"
    assert all(r.due_at is not None for r in results)


# -- conveyor enqueue --delay / --at ---------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, seen: list[httpx.Request]) -> typer.Typer:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _answer(request)

    def client(*_args: Any, **_kwargs: Any) -> Client:
        return Client("http://api.test", None, transport=httpx.MockTransport(handler))

    monkeypatch.setattr(cli_api, "api_client", client)
    app = typer.Typer()
    cli_api.register(app)
    return app


@pytest.mark.parametrize(("option", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200)])
def test_delay_takes_durations(
    cli: typer.Typer, seen: list[httpx.Request], option: str, seconds: int
) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "note.send", "-d", "{}", "--delay", option])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "j-1"
    assert float(seen[-1].url.params["delay_s"]) == seconds
    assert "scheduled for 2026-12-06T12:10:00.123000+00:00" in result.stderr


def test_at_takes_an_rfc3339_time(cli: typer.Typer, seen: list[httpx.Request]) -> None:
    at = "2026-12-24T18:00:00+01:00"
    result = CliRunner().invoke(cli, ["enqueue", "note.send", "-d", "{}", "--at", at])
    assert result.exit_code == 0, result.output
    assert seen[-1].url.params["not_before"] == at


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delay", "10m", "--at", "2026-12-24T18:00:00Z"], "give --delay or --at, not both"),
        (["--delay", "soon"], "--delay: invalid duration 'soon'"),
        (["--at", "tomorrow"], "--at: 'tomorrow' is not an RFC 3339 time"),
        (["--at", "2026-12-24T18:00:00"], "--at: the time needs a UTC offset"),
    ],
)
def test_bad_delays_are_usage_errors(
    cli: typer.Typer, seen: list[httpx.Request], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "note.send", "-d", "{}", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert seen == []
