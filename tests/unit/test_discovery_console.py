"""``.conveyor/up.json`` names the web console ``conveyor up`` runs (``console_url``); a file
written before it existed still reads, with no console."""

from __future__ import annotations

import os
from pathlib import Path

from infra.discovery import Discovered, read_discovery, write_discovery


def _record(**extra: object) -> Discovered:
    return Discovered(
        pid=os.getpid(),
        api_url="http://127.0.0.1:8000",
        endpoint_url="http://127.0.0.1:5000",
        region="us-east-1",
        queues_file="/p/queues.yaml",
        project="p",
        environment="dev",
        **extra,  # type: ignore[arg-type]
    )


def test_the_console_url_round_trips(tmp_path: Path) -> None:
    path = tmp_path / ".conveyor" / "up.json"
    write_discovery(path, _record(console_url="http://127.0.0.1:8080"))
    found = read_discovery(path)
    assert found is not None
    assert found.console_url == "http://127.0.0.1:8080"


def test_a_file_without_a_console_reads_as_none() -> None:
    data = _record().to_json()
    del data["console_url"]
    found = Discovered.from_json(data)
    assert found is not None
    assert found.console_url is None
