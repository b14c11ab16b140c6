"""The benchmark's report: issue 17's targets as MET / MISS / n/a from given figures.

No benchmark runs here: the raw results are made up, so every decision is checked
against known inputs (no timing, no emulator).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import report
from benchmarks.run import Settings, Step, plan
from benchmarks.systems import conveyor
from infra.topology import load_topology


def _phase(jobs: int, jobs_per_s: float, *, cpu_s: float, requests: int) -> dict[str, Any]:
    return {
        "jobs": jobs,
        "wall_s": jobs / jobs_per_s,
        "jobs_per_s": jobs_per_s,
        "requests": {"sqs.ReceiveMessage": requests},
        "emulator_requests": {"sqs.ReceiveMessage": requests},
        "producer_cpu_s": cpu_s / 2,
        "consumer_cpu_s": cpu_s / 2,
        "cpu_s_by_process": {"sys-worker": cpu_s * 0.3, "sys-api": cpu_s * 0.2},
        "latency_s": [],
    }


def _system(
    jobs_per_s: float,
    *,
    concurrency: int = 2,
    cpu_s: float = 1.0,
    requests: int = 30,
    idle_receives: int = 2,
    cpu_jobs_per_s: float | None = None,
) -> dict[str, Any]:
    """A throughput step's raw result: 100 jobs per phase, ``cpu_s`` of client CPU each."""
    out: dict[str, Any] = {
        "concurrency": concurrency,
        "worker_pool": "prefork",
        "consumer_nodes": 1,
        "noop": _phase(100, jobs_per_s, cpu_s=cpu_s, requests=requests),
        "cpu": _phase(100, cpu_jobs_per_s or jobs_per_s, cpu_s=cpu_s + 0.5, requests=requests),
        "peak_rss_bytes": 300 * 2**20,
        "peak_worker_rss_bytes": 200 * 2**20,
    }
    if concurrency == 2:
        out["idle"] = {
            "window_s": 40.0,
            "requests": {"sqs.ReceiveMessage": idle_receives},
            "emulator_requests": {},
        }
        out["light"] = {**_phase(10, 10.0, cpu_s=0.1, requests=10), "latency_s": [0.02] * 10}
    return out


def _io(
    pool: str, jobs_per_s: float, rss_mb: float, *, requests: int = 300, idle_receives: int = 2
) -> dict[str, Any]:
    return {
        "idle": {
            "window_s": 40.0,
            "requests": {"sqs.ReceiveMessage": idle_receives},
            "emulator_requests": {},
        },
        "concurrency": 32,
        "worker_pool": pool,
        "consumer_nodes": 1,
        "io": _phase(1000, jobs_per_s, cpu_s=2.0, requests=requests),
        "worker_pss_bytes": int(rss_mb / 2 * 2**20),
        "peak_rss_bytes": int((rss_mb + 100) * 2**20),
        "peak_worker_rss_bytes": int(rss_mb * 2**20),
    }


SETTINGS = {
    "n": 100,
    "window": 500,
    "concurrencies": [2, 8],
    "cpu_ms": 5.0,
    "idle_s": 40.0,
    "latency_jobs": 10,
    "latency_rate": 10.0,
    "systems": ["celery", "raw", "conveyor"],
    "io_n": 1000,
    "io_ms": 100.0,
    "io_concurrency": 32,
    "io_pools": ["prefork", "threads", "asyncio"],
}
META = {
    "python": "3.11",
    "machine": "Linux x86_64, 2 CPUs",
    "load_average_1m": 1.0,
    "started_at": "2026-12-06 16:00 UTC",
    "versions": {"celery": "5"},
    "duration_s": 1.0,
}


def _results(**override: Any) -> dict[str, Any]:
    """Every target met: Conveyor at 0.9 x the raw loop, 0.2 x Celery's CPU, and so on."""
    results: dict[str, Any] = {
        "throughput": {
            "2": {
                "celery": _system(20, cpu_s=5.0, requests=250),
                "raw": _system(400),
                "conveyor": _system(360, cpu_s=1.0),
            },
            "8": {
                "celery": _system(60, concurrency=8, cpu_s=5.0, requests=250),
                "raw": _system(1000, concurrency=8),
                "conveyor": _system(900, concurrency=8),
            },
        },
        "io": {
            "prefork": _io("prefork", 300, 1000),
            "threads": _io("threads", 300, 100),
            "asyncio": _io("asyncio", 310, 80),
        },
    }
    for path, value in override.items():
        section, key, *name = path.split("__")
        if name:
            results[section][key][name[0]] = value
        elif value is None:
            del results[section][key]
        else:
            results[section][key] = value
    return results


def _verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    doc = report.build(results, SETTINGS, META)
    return {t["target"]: t for t in doc["targets"]}


def _row(verdicts: dict[str, dict[str, Any]], start: str) -> dict[str, Any]:
    (found,) = [t for name, t in verdicts.items() if name.startswith(start)]
    return found


def test_every_target_met_from_good_figures() -> None:
    verdicts = _verdicts(_results())
    assert len(verdicts) == 12
    assert {t["verdict"] for t in verdicts.values()} == {"MET"}, verdicts
    assert _row(verdicts, "no-op jobs/s ÷ raw loop, concurrency 2")["value"] == 0.9
    assert _row(verdicts, "no-op jobs/s ÷ raw loop, concurrency 8")["value"] == 0.9
    assert _row(verdicts, "100 ms I/O jobs/s, concurrency 32, threads")["value"] == 0.938
    assert _row(verdicts, "node RSS, concurrency 32: asyncio")["value"] == 0.08
    assert _row(verdicts, "client CPU per no-op job")["value"] == 0.2
    assert _row(verdicts, "idle ReceiveMessage")["value"] == 3.0
    assert _row(verdicts, "idle ReceiveMessage")["target"].endswith("(worst: prefork c2)")


NOOP_C2 = "no-op jobs/s ÷ raw loop, concurrency 2"
NOOP_C8 = "no-op jobs/s ÷ raw loop, concurrency 8"
IO_THREADS = "100 ms I/O jobs/s, concurrency 32, threads"


@pytest.mark.parametrize(
    ("override", "row", "value"),
    [
        ({"throughput__2__conveyor": _system(319, cpu_jobs_per_s=360)}, NOOP_C2, 0.797),
        ({"throughput__8__conveyor": _system(790, concurrency=8)}, NOOP_C8, 0.79),
        ({"io__threads": _io("threads", 250, 100)}, IO_THREADS, 0.781),
        ({"io__asyncio": _io("asyncio", 310, 260)}, "node RSS, concurrency 32: asyncio", 0.26),
        ({"throughput__2__conveyor": _system(360, cpu_s=1.3)}, "client CPU per no-op job", 0.26),
        ({"throughput__2__conveyor": _system(360, idle_receives=3)}, "idle ReceiveMessage", 4.5),
        ({"io__asyncio": _io("asyncio", 310, 80, idle_receives=4)}, "idle ReceiveMessage", 6.0),
    ],
)
def test_a_figure_past_its_limit_is_a_miss(
    override: dict[str, Any], row: str, value: float
) -> None:
    verdicts = _verdicts(_results(**override))
    found = _row(verdicts, row)
    assert (found["verdict"], found["met"], found["value"]) == ("MISS", False, value)
    assert [t for t in verdicts.values() if t["verdict"] != "MET"] == [found]


def test_a_ratio_exactly_at_its_limit_is_met() -> None:
    verdicts = _verdicts(_results(throughput__2__conveyor=_system(320)))
    assert _row(verdicts, NOOP_C2)["verdict"] == "MET"


def test_requests_per_job_is_the_worst_conveyor_phase_io_included() -> None:
    verdicts = _verdicts(_results(io__threads=_io("threads", 300, 100, requests=400)))
    found = _row(verdicts, "SNS+SQS requests per job at backlog")
    assert found["target"].endswith("(worst: io threads)")
    assert (found["value"], found["verdict"]) == (0.4, "MISS")


def test_a_pool_this_revision_lacks_is_na_with_its_reason_never_met() -> None:
    verdicts = _verdicts(_results(io__asyncio={"skipped": "no asyncio pool"}))
    for row in ("100 ms I/O jobs/s, concurrency 32, asyncio", "node RSS, concurrency 32: asyncio"):
        found = _row(verdicts, row)
        assert (found["verdict"], found["met"], found["value"]) == ("n/a", None, None)
        assert found["why"] == "no asyncio pool"
    assert _row(verdicts, "node RSS, concurrency 32: threads")["verdict"] == "MET"


def test_systems_and_concurrencies_not_run_are_na() -> None:
    results = _results(throughput__8=None)
    del results["throughput"]["2"]["celery"]
    verdicts = _verdicts(results)
    c8 = _row(verdicts, "no-op jobs/s ÷ raw loop, concurrency 8")
    assert (c8["verdict"], c8["why"]) == ("n/a", "concurrency 8 not run")
    cpu = _row(verdicts, "client CPU per no-op job")
    assert (cpu["verdict"], cpu["why"]) == ("n/a", "celery not run")
    assert _row(verdicts, "no-op jobs/s ÷ raw loop, concurrency 2")["verdict"] == "MET"


def test_no_prefork_io_run_leaves_the_memory_rows_na() -> None:
    verdicts = _verdicts(_results(io__prefork=None))
    found = _row(verdicts, "node RSS, concurrency 32: threads")
    assert (found["verdict"], found["why"]) == ("n/a", "prefork not run")


def test_the_table_and_markdown_print_verdicts_and_na() -> None:
    doc = report.build(_results(io__asyncio={"skipped": "no asyncio pool"}), SETTINGS, META)
    text = report.table(doc)
    assert "n/a (no asyncio pool)" in text
    assert "asyncio: n/a (no asyncio pool)" in text
    lines = text.splitlines()
    assert any(line.startswith("concurrency 2") for line in lines)
    assert any(line.startswith("concurrency 8") for line in lines)
    verdicts = [line.split()[0] for line in lines[lines.index(report.targets_table(doc)[0]) + 1 :]]
    assert verdicts.count("n/a") == 2
    assert verdicts.count("MET") == 10
    page = report.markdown(doc, "python -m benchmarks")
    assert page.startswith("# Benchmark results")
    assert "N = 100 jobs per throughput phase" in page
    assert text in page


def test_the_plan_runs_every_system_at_each_concurrency_then_each_io_pool() -> None:
    steps = plan(Settings(systems=("celery", "raw", "conveyor")))
    assert steps[:3] == [
        Step(name, 2, ("idle", "light", "noop", "cpu")) for name in ("celery", "raw", "conveyor")
    ]
    assert steps[3:6] == [Step(name, 8, ("noop", "cpu")) for name in ("celery", "raw", "conveyor")]
    assert steps[6:] == [
        Step("conveyor", 32, ("io",), worker_pool="prefork"),
        Step("conveyor", 32, ("idle", "io"), worker_pool="threads"),
        Step("conveyor", 32, ("idle", "io"), worker_pool="asyncio"),
    ]


def test_the_io_topology_sets_the_pool_and_loads(tmp_path: Any) -> None:
    assert conveyor.supports("prefork")
    assert conveyor.supports("threads")
    assert not conveyor.supports("no-such-pool")
    doc = conveyor.topology_for("threads")
    assert doc["pools"]["bench"]["worker_pool"] == "threads"
    path = tmp_path / "queues.yaml"
    import yaml  # noqa: PLC0415

    path.write_text(yaml.safe_dump(doc))
    assert load_topology(path).pools["bench"].worker_pool == "threads"
    handlers = {t["handler"] for t in conveyor.topology_for("asyncio")["job_types"].values()}
    assert handlers == {conveyor.ASYNC_HANDLER}


def test_tracing_is_measured_at_the_first_concurrency_only_without_idle() -> None:
    steps = plan(Settings(systems=("conveyor", "conveyor_otel"), io_pools=()))
    assert steps == [
        Step("conveyor", 2, ("idle", "light", "noop", "cpu")),
        Step("conveyor_otel", 2, ("light", "noop", "cpu")),
        Step("conveyor", 8, ("noop", "cpu")),
    ]


def test_the_io_table_compares_each_pool_with_prefork() -> None:
    doc = report.build(_results(io__asyncio={"skipped": "no asyncio pool"}), SETTINGS, META)
    assert doc["io"]["threads"]["rss_vs_prefork"] == 0.1
    assert doc["io"]["threads"]["pss_vs_prefork"] == 0.1
    (rss_row,) = [line for line in report.table(doc).splitlines() if line.startswith("node peak")]
    assert rss_row.split()[-3:] == ["1000", "100", "n/a"]
