"""The emulator in a thread of this process: :class:`infra.emulator.Emulator`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto.core import utils as moto_utils
from moto.sqs import models

from infra.emulator import Emulator
from infra.emulator.fixes import revert_fixes
from tests.support.emulator import sqs_client


@pytest.fixture
def unpatched_afterwards() -> Iterator[None]:
    """An Emulator patches moto for the whole process: undo that after the test."""
    revert_fixes()
    yield
    revert_fixes()


def test_binds_loopback_on_a_free_port_and_applies_the_fixes(unpatched_afterwards: None) -> None:
    with Emulator(fixes=["fast_clock"]) as emulator:
        host, port = emulator._server.get_host_and_port()  # type: ignore[union-attr]
        assert host == "127.0.0.1"  # not moto's default 0.0.0.0
        assert port > 0
        assert emulator.endpoint_url == f"http://127.0.0.1:{port}"
        assert emulator.applied_fixes == ["fast_clock"]
        assert vars(models)["unix_time"] is not moto_utils.unix_time
        assert sqs_client(emulator.endpoint_url).list_queues()["ResponseMetadata"]
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.endpoint_url


def test_restarts_on_the_same_port_and_refuses_a_taken_one(unpatched_afterwards: None) -> None:
    first = Emulator(fixes="none")
    first.start()
    port = first.port
    try:
        with pytest.raises(OSError, match="in use"):  # moto's own start() would hang here
            Emulator(port=port, fixes="none").start()
    finally:
        first.stop()
    with Emulator(port=port, fixes="none") as again:  # the socket was released
        assert again.endpoint_url == f"http://127.0.0.1:{port}"


def test_an_unknown_fix_is_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="warp_drive"):
        Emulator(fixes=["warp_drive"])
