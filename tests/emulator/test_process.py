"""The emulator as a process: ``python -m infra.emulator`` and :class:`EmulatorProcess`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError

from infra.emulator import EmulatorProcess, wait_until_ready
from infra.emulator.fixes import selected_fixes_from_env
from infra.emulator.server import ENDPOINT_LINE_PREFIX
from tests.support.emulator import sqs_client

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def queue_names(endpoint_url: str) -> list[str]:
    urls = sqs_client(endpoint_url).list_queues().get("QueueUrls", [])
    return [url.rsplit("/", 1)[-1] for url in urls]


@pytest.mark.integration
def test_serve_announces_its_endpoint_first_and_exits_0_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.emulator", "--port", "0", "--fixes", "fast_clock"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()  # blocks until the child prints or exits
        assert first_line.startswith(ENDPOINT_LINE_PREFIX), first_line
        endpoint = first_line.removeprefix(ENDPOINT_LINE_PREFIX).strip()
        host, port = endpoint.removeprefix("http://").split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        wait_until_ready(endpoint, timeout_s=30)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == ""  # exactly one line on stdout
    assert "SQS fixes applied: fast_clock" in stderr
    assert "SIGTERM received" in stderr


@pytest.mark.integration
def test_an_unknown_fix_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infra.emulator", "--fixes", "fast_clock,warp_drive"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "warp_drive" in result.stderr
    assert "serialise_queue_mutations" in result.stderr


@pytest.mark.integration
def test_kill_restart_reset_and_stop(tmp_path: Path) -> None:
    log = tmp_path / "emulator.log"
    with EmulatorProcess(log_path=log) as emulator:
        endpoint, port, first_pid = emulator.endpoint_url, emulator.port, emulator.pid
        assert endpoint == f"http://127.0.0.1:{port}"
        assert emulator.running
        client = sqs_client(endpoint)
        client.create_queue(QueueName="survives-nothing")
        assert queue_names(endpoint) == ["survives-nothing"]

        emulator.reset()
        assert queue_names(endpoint) == []

        client.create_queue(QueueName="dies-with-the-process")
        emulator.kill()
        assert not emulator.running
        with pytest.raises(EndpointConnectionError):
            client.list_queues()

        assert emulator.restart() == endpoint  # same port
        assert emulator.pid != first_pid
        assert queue_names(endpoint) == []  # state is lost, as after a crash
        emulator.stop()
        assert not emulator.running
        emulator.stop()  # a second stop is a no-op
    assert ENDPOINT_LINE_PREFIX + endpoint in log.read_text()


@pytest.mark.integration
def test_start_fails_fast_when_the_port_is_taken(emulator: EmulatorProcess) -> None:
    taken = EmulatorProcess(port=emulator.port)
    with pytest.raises(RuntimeError, match="exited with status 1") as raised:
        taken.start()
    assert "cannot listen" in str(raised.value)
    assert not taken.running


def test_wait_until_ready_gives_up_at_its_deadline() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TimeoutError, match="no SQS answer"):
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=0.3)


@pytest.mark.integration
def test_the_shared_emulator_is_fixed_as_the_environment_says(emulator: EmulatorProcess) -> None:
    expected = ", ".join(selected_fixes_from_env()) or "none"
    assert f"SQS fixes applied: {expected}" in emulator.output()
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    assert sqs_client(emulator.endpoint_url).create_queue(QueueName=name)["QueueUrl"].endswith(name)
