"""A worker's /healthz and /metrics listen on loopback unless CONVEYOR_WORKER_HEALTH_HOST says."""

from __future__ import annotations

import pytest

from workers.health import serve_health


def _serve() -> tuple[str, int]:
    server = serve_health(
        0, healthy=lambda: (True, {}), metrics=lambda: (b"", "text/plain; version=0.0.4")
    )
    try:
        host, port = server.server_address[:2]
        return str(host), int(port)
    finally:
        server.shutdown()
        server.server_close()


def test_the_health_endpoint_binds_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONVEYOR_WORKER_HEALTH_HOST", raising=False)
    assert _serve()[0] == "127.0.0.1"


def test_the_health_host_setting_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    everywhere = "0.0.0.0"  # noqa: S104 - what a container sets
    monkeypatch.setenv("CONVEYOR_WORKER_HEALTH_HOST", everywhere)
    assert _serve()[0] == everywhere
