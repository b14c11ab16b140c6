"""Liveness follows the stalest receive loop, so one dead queue loop is noticed."""

from __future__ import annotations

import pytest

from workers import liveness
from workers.liveness import Liveness


def test_a_node_is_as_alive_as_its_stalest_queue_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: now[0])
    state = Liveness()
    now[0] = 110.0
    assert state.age_s() == 10.0  # no turn yet: counted from the start
    state.mark("images")
    state.mark("billing")
    now[0] = 130.0
    state.mark("images")  # billing's loop stopped turning at 110
    now[0] = 140.0
    assert state.age_s() == 30.0
    state.mark("billing")
    assert state.age_s() == 10.0
