"""The console's pure parts: signed sessions and CSRF tokens, the sampler's last-hour
counts (node restarts included), the attention items, the SVG chart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra.aws.lookup import Depth
from infra.topology import Topology, load_topology
from ops.console import sampler as sampler_module
from ops.console.charts import sparkline
from ops.console.deps import Principal
from ops.console.sampler import QueueSample, Sample, Sampler
from ops.console.session import Sessions
from ops.console.views import attention
from ops.scaling.model import PoolState
from ops.scaling.status import QueueStatus, SystemStatus
from producers.auth import ApiKey, parse_keys
from tests import REPO


@pytest.fixture
def topology() -> Topology:
    return load_topology(REPO / "tests" / "fixtures" / "dlq.yaml")


def test_a_session_round_trips_and_a_tampered_one_is_no_session() -> None:
    sessions = Sessions(b"k" * 32, max_age_s=60)
    session = sessions.new(Principal("oncall", "operator"))
    cookie = sessions.dump(session)
    assert sessions.load(cookie) == session
    data, _, mac = cookie.rpartition(".")
    forged = data.replace(data[5], "A" if data[5] != "A" else "B") + "." + mac
    assert sessions.load(forged) is None
    assert sessions.load(cookie + "0") is None
    assert sessions.load("not-a-cookie") is None
    # Another secret (another process without a configured one) reads no session.
    assert Sessions(b"j" * 32, max_age_s=60).load(cookie) is None


def test_an_expired_session_is_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = Sessions(b"k" * 32, max_age_s=60)
    cookie = sessions.dump(sessions.new(Principal("watcher", "viewer")))
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert sessions.load(cookie) is None


def test_the_csrf_token_is_bound_to_its_session() -> None:
    sessions = Sessions(b"k" * 32, max_age_s=60)
    one, two = sessions.new(), sessions.new()
    assert sessions.csrf_ok(one, sessions.csrf_token(one))
    assert not sessions.csrf_ok(two, sessions.csrf_token(one))
    assert not sessions.csrf_ok(one, None)
    assert not sessions.csrf_ok(None, sessions.csrf_token(one))


def _sampler(topology: Topology, samples: list[Sample]) -> Sampler:
    found = Sampler(topology, lambda: None, interval_s=10, state_dir=None, clock=lambda: 1000.0)  # type: ignore[arg-type,return-value]
    found._samples.extend(samples)
    return found


def _counts(succeeded: int, failed: int = 0, dead: int = 0) -> dict[str, int]:
    return {
        "conveyor_jobs_succeeded": succeeded,
        "conveyor_jobs_failed": failed,
        "conveyor_jobs_dead_lettered": dead,
    }


def _queues(visible: int = 0, dlq: int = 0) -> dict[str, QueueSample]:
    return {
        "work": QueueSample(Depth(visible, 0, 0), dlq),
        "ledger": QueueSample(Depth(0, 0, 0), 0),
    }


def test_last_hour_sums_counter_increases_and_survives_a_node_restart(topology: Topology) -> None:
    samples = [
        Sample(900.0, _queues(), {"main-1": {"work": _counts(10, 1)}}),
        Sample(950.0, _queues(), {"main-1": {"work": _counts(15, 2, 1)}}),
        # main-1 restarted (its counters start again) and main-2 appeared.
        Sample(990.0, _queues(), {"main-1": {"work": _counts(3)}, "main-2": {"work": _counts(4)}}),
    ]
    last_hour = _sampler(topology, samples).last_hour()
    assert last_hour.known
    assert last_hour.window_s == 90.0
    assert last_hour.by_queue["work"] == {"succeeded": 5 + 3 + 4, "failed": 1, "dead_lettered": 1}
    assert last_hour.by_queue["ledger"] == {"succeeded": 0, "failed": 0, "dead_lettered": 0}


def test_last_hour_is_unknown_without_node_counters(topology: Topology) -> None:
    samples = [Sample(900.0, _queues()), Sample(990.0, _queues())]
    assert not _sampler(topology, samples).last_hour().known


def test_samples_older_than_an_hour_are_left_out(topology: Topology) -> None:
    old = 1000.0 - sampler_module.WINDOW_S - 1
    found = _sampler(topology, [Sample(old, _queues(dlq=9)), Sample(990.0, _queues(dlq=1))])
    assert [s.at for s in found.samples()] == [990.0]


def _status(topology: Topology, *, visible: int, dlq: int, desired: int) -> SystemStatus:
    rows = [
        QueueStatus("work", "w", "main", True, Depth(visible, 0, 0), dlq_depth=dlq),
        QueueStatus("ledger", "l", None, True, Depth(0, 0, 0), dlq_depth=0),
    ]
    return SystemStatus(1000.0, rows, "local", [PoolState("main", desired, desired)])


def test_attention_puts_a_growing_dlq_first(topology: Topology) -> None:
    samples = [Sample(800.0, _queues(visible=5, dlq=1)), Sample(990.0, _queues(visible=7, dlq=4))]
    items = attention(
        topology, _status(topology, visible=7, dlq=4, desired=1), _sampler(topology, samples)
    )
    kinds = [(i["kind"], i["subject"]) for i in items]
    assert kinds[0] == ("dlq_growing", "work")
    assert "grew from 1 to 4" in items[0]["text"]
    # main is at its maximum (1) with work waiting; the backlog did not shrink.
    assert ("pool_at_max", "main") in kinds
    assert ("backlog_not_shrinking", "work") in kinds
    assert ("dlq_not_empty", "work") not in kinds  # the growing item says it already


def test_nothing_needs_attention_on_a_quiet_system(topology: Topology) -> None:
    samples = [Sample(800.0, _queues()), Sample(990.0, _queues())]
    status = _status(topology, visible=0, dlq=0, desired=1)
    assert attention(topology, status, _sampler(topology, samples)) == []


def test_the_chart_is_inline_svg_scaled_to_its_maximum() -> None:
    chart = str(sparkline([0.0, 60.0, 120.0], [[0, 5, 10], [0, 0, 2]], label="work <b>"))
    assert chart.startswith("<svg")
    assert chart.count("<polyline") == 2
    assert "max 10" in chart
    assert "work &lt;b&gt;" in chart  # the label is escaped
    assert "collecting" in str(sparkline([1.0], [[1]], label="x"))


def test_console_scopes_of_api_keys() -> None:
    def role(scopes: Any) -> str | None:
        return ApiKey("k", "0" * 64, scopes=frozenset(scopes)).console_role

    assert role(["viewer"]) == "viewer"
    assert role(["operator"]) == "operator"
    assert role(["admin"]) == "operator"
    assert role([]) is None
    keys = parse_keys(
        '{"keys": [{"name": "w", "sha256": "' + "a" * 64 + '", "scopes": ["viewer"]}]}',
        source="test",
    )
    assert keys[0].console_role == "viewer"
