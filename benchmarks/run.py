"""One benchmark run: one emulator, every system in turn, the same phases for each.

The plan (:func:`plan`), each step on fresh processes and fresh queues:
1. at the first concurrency (2), each system: idle, light load, no-op, 5 ms CPU;
2. at each further concurrency (8), each system: no-op, 5 ms CPU;
3. Conveyor at the I/O concurrency (32) on each execution pool (prefork, threads,
   asyncio): idle (not prefork: measured in 1.), the I/O workload (each job waits
   100 ms), and the node's memory.

Per step: start its processes; wait until every consumer has polled; run a few
warm-up jobs (not measured); then the step's phases, of:
- idle: no jobs for ``idle_s`` — the requests an idle node makes;
- light: ``latency_jobs`` single-job enqueues at ``latency_rate`` jobs/s —
  enqueue-to-start latency;
- noop, cpu, io: N jobs each (``io_n`` for io), the backlog bounded by ``window`` —
  jobs/s, requests per job (client-side counts, and the emulator's own record of
  the same window), client CPU per job;
then stop everything it started. Peak RSS is sampled throughout (of everything the
step started, and of the worker nodes alone); the worker nodes' PSS once, after the
io phase. A step whose pool this revision lacks (asyncio before it exists) is
skipped, with the reason in the results.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import jobs
from benchmarks.counting import COUNTS_ENV
from benchmarks.measure import EmulatorRecording, Trees, diff, read_counts, settle_counts
from benchmarks.procs import Proc, counted, kill, spawn, stop
from benchmarks.systems import conveyor, load
from benchmarks.systems.common import RunContext
from infra import aws
from infra.emulator import EmulatorProcess

REPO = Path(__file__).resolve().parent.parent
#: Counts are read once they have not changed for this long (Conveyor's deletes wait ≤ 1 s).
SETTLE_QUIET_S = 1.6
#: Jobs run through each system before anything is measured.
WARMUP_JOBS = 5
#: The slowest rate a throughput phase may run at before it is abandoned as stuck.
MIN_RATE_JOBS_PER_S = 5.0


@dataclass(frozen=True)
class Settings:
    """What to run."""

    n: int = 600
    window: int = 500
    #: Throughput concurrencies: the first also measures idle requests and latency.
    concurrencies: tuple[int, ...] = (2, 8)
    cpu_ms: float = 5.0
    idle_s: float = 40.0
    latency_jobs: int = 100
    latency_rate: float = 10.0
    systems: tuple[str, ...] = ("celery", "raw", "conveyor")
    #: The I/O workload: ``io_n`` jobs that each wait ``io_ms``, on Conveyor, one node
    #: of ``io_concurrency`` per execution pool in ``io_pools``.
    io_n: int = 1600
    io_ms: float = 100.0
    io_concurrency: int = 32
    io_pools: tuple[str, ...] = ("prefork", "threads", "asyncio")
    #: The whole run gives up (and stops everything it started) after this long.
    deadline_s: float = 1800.0
    #: Logs, records and counts of the run (.conveyor/ is git-ignored).
    work_dir: Path = field(
        default_factory=lambda: REPO / ".conveyor" / "bench" / time.strftime("%Y%m%dT%H%M%S")
    )


@dataclass(frozen=True)
class Step:
    """One system at one concurrency (Conveyor: on one execution pool), and its phases."""

    system: str
    concurrency: int
    phases: tuple[str, ...]
    worker_pool: str = "prefork"


#: Conveyor with tracing on: what tracing costs is measured at the first concurrency
#: only, without the idle phase (its idle polling is Conveyor's), to keep the run short.
TRACED = "conveyor_otel"


def plan(settings: Settings) -> list[Step]:
    """The steps of a run, in order (see the module docstring)."""
    steps: list[Step] = []
    for i, concurrency in enumerate(settings.concurrencies):
        for name in settings.systems:
            if i == 0:
                idle = () if name == TRACED else ("idle",)
                steps.append(Step(name, concurrency, (*idle, "light", "noop", "cpu")))
            elif name != TRACED:
                steps.append(Step(name, concurrency, ("noop", "cpu")))
    if "conveyor" in settings.systems:
        # Prefork's idle polling is measured at the first concurrency; the other
        # pools' before their I/O phase (their nodes receive on a loop of their own).
        steps += [
            Step(
                "conveyor",
                settings.io_concurrency,
                ("io",) if pool == "prefork" and settings.concurrencies else ("idle", "io"),
                worker_pool=pool,
            )
            for pool in settings.io_pools
        ]
    return steps


@dataclass
class PhaseResult:
    """What one phase of one system measured."""

    jobs: int
    wall_s: float
    jobs_per_s: float
    requests: dict[str, int]
    emulator_requests: dict[str, int]
    producer_cpu_s: float
    #: CPU of the long-running processes (workers, and the API for Conveyor).
    consumer_cpu_s: float
    cpu_s_by_process: dict[str, float]
    latency_s: list[float]


#: When the whole run must be over (monotonic), set by :func:`run`: a stuck or very
#: slow run fails with what it was waiting for instead of running on.
_run_deadline = [float("inf")]


def _wait(
    probe: Any, what: str, timeout_s: float, procs: list[Proc], producer: Proc | None = None
) -> None:
    timeout_s = max(0.0, min(timeout_s, _run_deadline[0] - time.monotonic()))
    deadline = time.monotonic() + timeout_s
    while not probe():
        dead = [p.name for p in procs if p.popen.poll() is not None]
        if producer is not None and producer.popen.poll() not in (None, 0):
            dead.append(producer.name)
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)  # polling interval, bounded by the deadline


class SystemRun:
    """Runs the phases for one system."""

    def __init__(self, step: Step, settings: Settings, emulator: EmulatorProcess) -> None:
        name = step.system
        self.name = name
        self.step = step
        self.settings = settings
        self.driver = load(name)
        pool = "" if step.worker_pool == "prefork" else f"-{step.worker_pool}"
        base = settings.work_dir / f"{name}{pool}-c{step.concurrency}"
        dirs = {d: base / d for d in ("logs", "records", "counts")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.ctx = RunContext(
            endpoint_url=emulator.endpoint_url,
            port=emulator.port,
            prefix=f"b{uuid.uuid4().hex[:6]}-{name.replace('_', '')}",
            env=_child_env(dirs["records"], dirs["counts"]),
            log_dir=dirs["logs"],
            records_dir=dirs["records"],
            counts_dir=dirs["counts"],
            concurrency=step.concurrency,
            worker_pool=step.worker_pool,
        )
        self.recording = EmulatorRecording(emulator.endpoint_url)
        self.config_path = base / "config.json"
        self.procs: list[Proc] = []
        self.trees = Trees()

    def run(self) -> dict[str, Any]:
        """The step's phases; always stops what it started."""
        config = self.driver.setup(self.ctx)
        self.config_path.write_text(json.dumps(config))
        phases, s = self.step.phases, self.settings
        out: dict[str, Any] = {
            "concurrency": self.step.concurrency,
            "worker_pool": self.step.worker_pool,
        }
        try:
            self.procs = self.driver.start(self.ctx, config)
            for proc in self.procs:
                self.trees.add(proc.name, proc.pid)
            consumers = len([p for p in self.procs if "worker" in p.name])
            _wait(
                lambda: (
                    read_counts(self.ctx.counts_dir, ["worker"]).get("sqs.ReceiveMessage", 0)
                    >= consumers
                ),
                f"{self.name}'s consumers to poll",
                120.0,  # a prefork node of 32 forks them all first
                self.procs,
            )
            out["consumer_nodes"] = consumers
            # First uses (client construction, lazy imports, connections) are not
            # what a running system pays per job: a few jobs first, not measured.
            self._phase("warmup", config, WARMUP_JOBS, 0.0, light=True)
            if "idle" in phases:
                out["idle"] = self._idle()
            if "light" in phases:
                out["light"] = asdict(self._phase("light", config, s.latency_jobs, 0.0, light=True))
            if "noop" in phases:
                out["noop"] = asdict(self._phase("noop", config, s.n, 0.0))
            if "cpu" in phases:
                out["cpu"] = asdict(self._phase("cpu", config, s.n, s.cpu_ms))
            if "io" in phases:
                out["io"] = asdict(self._phase("io", config, s.io_n, 0.0, io_ms=s.io_ms))
                out["worker_pss_bytes"] = self.trees.worker_pss_bytes()
        finally:
            codes = stop(self.procs)
            self.trees.close()
        out["peak_rss_bytes"] = self.trees.peak_rss_bytes
        out["peak_worker_rss_bytes"] = self.trees.peak_worker_rss_bytes
        out["exit_codes"] = codes
        return out

    def _idle(self) -> dict[str, Any]:
        before = settle_counts(self.ctx.counts_dir, quiet_s=0.5)
        self.recording.start()
        time.sleep(self.settings.idle_s)  # the measured idle window itself
        after = read_counts(self.ctx.counts_dir)
        return {
            "window_s": self.settings.idle_s,
            "requests": diff(after, before),
            "emulator_requests": self.recording.stop_and_count(),
        }

    def _phase(
        self,
        label: str,
        config: dict[str, Any],
        n: int,
        cpu_ms: float,
        *,
        light: bool = False,
        io_ms: float = 0.0,
    ) -> PhaseResult:
        records = self.ctx.records_dir
        base = jobs.finished(records)
        before: Counter[str] = settle_counts(self.ctx.counts_dir, quiet_s=SETTLE_QUIET_S)
        cpu_before = self.trees.cpu_s()
        self.recording.start()
        started_at = time.time()
        args = [self.name, str(self.config_path), "--n", str(n), "--cpu-ms", str(cpu_ms)]
        args += ["--base", str(base), "--io-ms", str(io_ms)]
        if light:
            args += ["--batch", "1", "--rate", str(self.settings.latency_rate)]
        else:
            args += ["--window", str(self.settings.window)]
        producer = spawn(
            f"{self.name}-producer-{label}",
            counted("producer", "benchmarks.produce", *args),
            {**self.driver.producer_env(self.ctx, config), COUNTS_ENV: str(self.ctx.counts_dir)},
            self.ctx.log_dir,
        )
        try:
            timeout_s = 60.0 + n / (self.settings.latency_rate if light else MIN_RATE_JOBS_PER_S)
            _wait(
                lambda: jobs.finished(records) - base >= n,
                f"{self.name}: {n} {label} jobs",
                timeout_s,
                self.procs,
                producer,
            )
            producer.popen.wait(30)
        finally:
            kill(producer)
            producer.log.close()
        after = settle_counts(self.ctx.counts_dir, quiet_s=SETTLE_QUIET_S)
        cpu_after = self.trees.cpu_s()
        cpu_by_process = {k: round(v - cpu_before.get(k, 0.0), 4) for k, v in cpu_after.items()}
        emulator_requests = self.recording.stop_and_count()
        report = _last_json_line(self.ctx.log_dir / f"{producer.name}.log")
        window = [(e, s) for e, s in _records(records) if e >= started_at]
        first_enqueue = min(e for e, _ in window)
        last_start = max(s for _, s in window)
        # Jobs are recorded as they start: the last one's wait is still part of the phase.
        wall_s = max(last_start + io_ms / 1000.0 - first_enqueue, 1e-9)
        return PhaseResult(
            jobs=len(window),
            wall_s=round(wall_s, 3),
            jobs_per_s=round(len(window) / wall_s, 1),
            requests=diff(after, before),
            emulator_requests=emulator_requests,
            producer_cpu_s=round(float(report["cpu_s"]), 4),
            consumer_cpu_s=round(sum(cpu_by_process.values()), 4),
            cpu_s_by_process=cpu_by_process,
            latency_s=sorted(s - e for e, s in window),
        )


def _records(directory: Path) -> list[tuple[float, float]]:
    out = []
    for path in directory.glob("*.rec"):
        for line in path.read_text().splitlines():
            enqueued, started = line.split()
            out.append((float(enqueued), float(started)))
    return out


def _last_json_line(path: Path) -> dict[str, Any]:
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("{"):
            value: dict[str, Any] = json.loads(line)
            return value
    raise RuntimeError(f"the producer reported nothing; see {path}")


def _child_env(records_dir: Path, counts_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        **{jobs.RECORDS_ENV: str(records_dir), COUNTS_ENV: str(counts_dir)},
    )
    return env


def run(settings: Settings) -> dict[str, Any]:
    """Run the plan on one emulator; the raw results.

    ``{"throughput": {concurrency: {system: result}}, "io": {worker_pool: result}}``;
    a skipped step's result is ``{"skipped": reason}``.
    """
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    # moto's request recorder writes here (the emulator inherits our environment).
    os.environ["MOTO_RECORDER_FILEPATH"] = str(settings.work_dir / "emulator-recording.jsonl")
    results: dict[str, Any] = {"throughput": {}, "io": {}}
    _run_deadline[0] = time.monotonic() + settings.deadline_s
    with EmulatorProcess(log_path=settings.work_dir / "emulator.log") as emulator:
        os.environ.update(
            AWS_ENDPOINT_URL=emulator.endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator accepts any
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(key, None)
        aws.reset_clients()
        for step in plan(settings):
            if "io" in step.phases:
                slot, name = results["io"], step.worker_pool
            else:
                slot = results["throughput"].setdefault(str(step.concurrency), {})
                name = step.system
            if not conveyor.supports(step.worker_pool):
                slot[name] = {"skipped": f"no {step.worker_pool} pool"}
                continue
            pool = f" ({step.worker_pool} pool)" if step.system.startswith("conveyor") else ""
            print(
                f"bench: {step.system}{pool}, concurrency {step.concurrency}:"
                f" {', '.join(step.phases)} ...",
                file=sys.stderr,
                flush=True,
            )
            slot[name] = SystemRun(step, settings, emulator).run()
    return results
