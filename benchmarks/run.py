"""One benchmark run: one emulator, the three systems in turn, the same phases for each.

Per system: start its processes; wait until every consumer has polled; run a few
warm-up jobs (not measured); then
1. idle: no jobs for ``idle_s`` — the requests an idle node makes;
2. light load: ``latency_jobs`` single-job enqueues at ``latency_rate`` jobs/s —
   enqueue-to-start latency;
3. throughput, no-op jobs, then 4. throughput, ~5 ms CPU jobs: N jobs each, the
   backlog bounded by ``window`` — jobs/s, requests per job (client-side counts,
   and the emulator's own record of the same window), client CPU per job;
then stop everything it started. Peak RSS is sampled throughout.
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
from benchmarks.systems import load
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

    n: int = 800
    window: int = 500
    concurrency: int = 2
    cpu_ms: float = 5.0
    idle_s: float = 40.0
    latency_jobs: int = 100
    latency_rate: float = 10.0
    systems: tuple[str, ...] = ("celery", "raw", "conveyor")
    #: The whole run gives up (and stops everything it started) after this long.
    deadline_s: float = 900.0
    #: Logs, records and counts of the run (.conveyor/ is git-ignored).
    work_dir: Path = field(
        default_factory=lambda: REPO / ".conveyor" / "bench" / time.strftime("%Y%m%dT%H%M%S")
    )


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

    def __init__(self, name: str, settings: Settings, emulator: EmulatorProcess) -> None:
        self.name = name
        self.settings = settings
        self.driver = load(name)
        base = settings.work_dir / name
        dirs = {d: base / d for d in ("logs", "records", "counts")}
        for d in dirs.values():
            d.mkdir(parents=True, exist_ok=True)
        self.ctx = RunContext(
            endpoint_url=emulator.endpoint_url,
            port=emulator.port,
            prefix=f"b{uuid.uuid4().hex[:6]}-{name}",
            env=_child_env(dirs["records"], dirs["counts"]),
            log_dir=dirs["logs"],
            records_dir=dirs["records"],
            counts_dir=dirs["counts"],
            concurrency=settings.concurrency,
        )
        self.recording = EmulatorRecording(emulator.endpoint_url)
        self.config_path = base / "config.json"
        self.procs: list[Proc] = []
        self.trees = Trees()

    def run(self) -> dict[str, Any]:
        """All phases; always stops what it started."""
        config = self.driver.setup(self.ctx)
        self.config_path.write_text(json.dumps(config))
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
                60.0,
                self.procs,
            )
            # First uses (client construction, lazy imports, connections) are not
            # what a running system pays per job: a few jobs first, not measured.
            self._phase("warmup", config, WARMUP_JOBS, 0.0, light=True)
            idle = self._idle()
            light = self._phase("light", config, self.settings.latency_jobs, 0.0, light=True)
            noop = self._phase("noop", config, self.settings.n, 0.0)
            cpu = self._phase("cpu", config, self.settings.n, self.settings.cpu_ms)
        finally:
            codes = stop(self.procs)
            self.trees.close()
        return {
            "consumer_nodes": consumers,
            "idle": idle,
            "light": asdict(light),
            "noop": asdict(noop),
            "cpu": asdict(cpu),
            "peak_rss_bytes": self.trees.peak_rss_bytes,
            "exit_codes": codes,
        }

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
        self, label: str, config: dict[str, Any], n: int, cpu_ms: float, *, light: bool = False
    ) -> PhaseResult:
        records = self.ctx.records_dir
        base = jobs.finished(records)
        before: Counter[str] = settle_counts(self.ctx.counts_dir, quiet_s=SETTLE_QUIET_S)
        cpu_before = self.trees.cpu_s()
        self.recording.start()
        started_at = time.time()
        args = [self.name, str(self.config_path), "--n", str(n), "--cpu-ms", str(cpu_ms)]
        args += ["--base", str(base)]
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
        wall_s = max(last_start - first_enqueue, 1e-9)
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
    """Run every selected system on one emulator; the raw results, by system."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    # moto's request recorder writes here (the emulator inherits our environment).
    os.environ["MOTO_RECORDER_FILEPATH"] = str(settings.work_dir / "emulator-recording.jsonl")
    results: dict[str, Any] = {}
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
        for name in settings.systems:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            results[name] = SystemRun(name, settings, emulator).run()
    return results
