"""``python -m benchmarks.soak``: a worker node's memory over many jobs, per pool kind.

Not a timed test and not a pass/fail check: it prints figures. For each pool kind
(prefork, threads, solo) it runs one node of the repository's ``media`` pool (its
queues.yaml, with ``worker_pool`` set to the kind) on the embedded emulator,
feeds it N ``image.resize`` jobs in batches of 1,000 (SendMessageBatch, at most
``--window`` waiting so moto's per-call cost stays flat), and every 1,000 jobs
samples the node's RSS and PSS (its whole process tree) and each process's USS
(psutil, from /proc/PID/smaps). The JSON on stdout has, per kind, the start-up figures,
every sample, and the growth per 1,000 jobs after the warm-up (a least-squares
slope): of the node's RSS, of the node process's USS and of each pool child's
USS (per 1,000 jobs of the node, and per 1,000 jobs the child ran, taking the
children to share the work evenly).

``--probe DIR`` runs the node through :mod:`benchmarks.heap_probe`, which writes
tracemalloc snapshots of each job-running process to DIR (see there).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import yaml

from infra import aws
from infra.emulator import EmulatorProcess
from infra.envelope import encode, make_envelope
from infra.net import free_port
from infra.provision import apply
from infra.topology import load_topology

REPO = Path(__file__).resolve().parent.parent
KINDS = ("prefork", "threads", "solo")
POOL = "media"
QUEUE = "images"
JOB_TYPE = "image.resize"
PAYLOAD = {"image_url": "https://images.example.com/cat.png", "width_px": 640}
SUCCEEDED = "conveyor_jobs_succeeded_total"
RECEIVES = "conveyor_sqs_receive_message_requests"
#: SendMessageBatch takes at most ten entries.
SQS_BATCH = 10
#: How often the node's job count is read while jobs run.
POLL_S = 0.5
READY_TIMEOUT_S = 120.0
#: The longest a node may go without finishing a job before the run gives up.
STALL_TIMEOUT_S = 120.0


@dataclass
class Sample:
    """The node's memory after ``jobs`` jobs."""

    jobs: int
    at_s: float
    node_rss_bytes: int
    #: The tree's proportional set size: shared pages split between their sharers, so
    #: unlike the RSS sum it does not count the pages children share with the node again.
    node_pss_bytes: int
    #: USS by role: ``node`` (the main process), ``child-<pid>`` (pool processes).
    uss_bytes: dict[str, int] = field(default_factory=dict)


def _tree(pid: int) -> list[psutil.Process]:
    main = psutil.Process(pid)
    return [main, *main.children(recursive=True)]


def sample(pid: int, jobs: int, started: float) -> Sample:
    """RSS of the node's process tree and the USS of each of its processes."""
    rss, pss, uss = 0, 0, {}
    for proc in _tree(pid):
        try:
            info = proc.memory_full_info()
        except psutil.NoSuchProcess:
            continue  # a pool child that was just replaced
        rss += info.rss
        pss += info.pss
        uss["node" if proc.pid == pid else f"child-{proc.pid}"] = info.uss
    return Sample(jobs, round(time.monotonic() - started, 1), rss, pss, uss)


def slope_per_1000(points: list[tuple[int, int]]) -> float | None:
    """Least-squares growth in bytes per 1,000 jobs of ``(jobs, bytes)`` points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return None
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return round(cov / var * 1000, 1)


def growth(samples: list[Sample], warmup_jobs: int) -> dict[str, Any]:
    """Growth per 1,000 jobs after the warm-up, for the node and for each child."""
    after = [s for s in samples if s.jobs >= warmup_jobs]
    roles = sorted({r for s in after for r in s.uss_bytes})
    children = [r for r in roles if r.startswith("child-")]
    per_role = {
        role: slope_per_1000([(s.jobs, s.uss_bytes[role]) for s in after if role in s.uss_bytes])
        for role in roles
    }
    child_slopes = [v for r, v in per_role.items() if r in children and v is not None]
    out: dict[str, Any] = {
        "node_rss_bytes_per_1000_jobs": slope_per_1000([(s.jobs, s.node_rss_bytes) for s in after]),
        "node_pss_bytes_per_1000_jobs": slope_per_1000([(s.jobs, s.node_pss_bytes) for s in after]),
        "uss_bytes_per_1000_jobs": per_role,
    }
    if child_slopes:
        mean = sum(child_slopes) / len(child_slopes)
        out["child_uss_bytes_per_1000_node_jobs_mean"] = round(mean, 1)
        # Each child ran about 1/len(children) of the node's jobs.
        out["child_uss_bytes_per_1000_child_jobs_mean"] = round(mean * len(children), 1)
    return out


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Node:
    """One ``conveyor worker --pool media`` process and its health endpoint."""

    def __init__(self, env: dict[str, str], log: Path, probe_dir: Path | None) -> None:
        self.port = free_port()
        entry = ["-m", "benchmarks.heap_probe"] if probe_dir else ["-m", "conveyor"]
        if probe_dir:
            env = {**env, "SOAK_HEAP_DIR": str(probe_dir)}
        argv = [sys.executable, *entry, "worker", "--pool", POOL, "--health-port", str(self.port)]
        self.log = log.open("ab")
        self.proc = psutil.Popen(
            argv, env=env, cwd=REPO, stdout=self.log, stderr=self.log, start_new_session=True
        )

    def metrics(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the node exited with {self.proc.returncode}; see {self.log.name}")
        try:
            page = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5.0)
        except httpx.HTTPError:
            return None
        return page.text if page.status_code == 200 else None

    def succeeded(self) -> int:
        text = self.metrics()
        return int(_metric(text, SUCCEEDED)) if text is not None else 0

    def wait_ready(self, processes: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            forked = len(psutil.Process(self.proc.pid).children()) >= processes
            text = self.metrics() if forked else None
            if text is not None and _metric(text, RECEIVES) >= 1:
                return
            time.sleep(POLL_S)  # polling the node's readiness, bounded by the deadline
        raise TimeoutError(f"the node was not ready within {READY_TIMEOUT_S:g} s")

    def stop(self) -> int:
        self.proc.terminate()
        try:
            code = self.proc.wait(90)
        except psutil.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            code = self.proc.wait()
        self.log.close()
        return int(code)


def _topology_file(kind: str, work_dir: Path, extra: dict[str, Any]) -> Path:
    doc = yaml.safe_load((REPO / "queues.yaml").read_text())
    pool = doc["pools"][POOL]
    pool["worker_pool"] = kind
    pool.update(extra)
    path = work_dir / f"queues-{kind}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _send(url: str, count: int) -> None:
    sqs = aws.client("sqs")
    for start in range(0, count, SQS_BATCH):
        entries = [
            {"Id": str(i), "MessageBody": encode(make_envelope(JOB_TYPE, PAYLOAD))}
            for i in range(min(SQS_BATCH, count - start))
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]


def soak_one(
    kind: str, jobs: int, args: argparse.Namespace, emulator: EmulatorProcess
) -> dict[str, Any]:
    """Run ``jobs`` jobs through one node of ``kind``; its figures."""
    work_dir: Path = args.work_dir
    environment = f"soak{uuid.uuid4().hex[:8]}"
    extra = json.loads(args.pool_settings) if args.pool_settings else {}
    path = _topology_file(kind, work_dir, extra)
    os.environ["CONVEYOR_ENVIRONMENT"] = environment
    aws.reset_clients()
    topology = load_topology(path)
    apply(topology)
    url = aws.client("sqs").get_queue_url(QueueName=topology.queue_name(QUEUE))["QueueUrl"]
    env = {
        **os.environ,
        "CONVEYOR_QUEUES_FILE": str(path),
        "CONVEYOR_LOG_FORMAT": "json",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    probe = args.probe / kind if args.probe else None
    if probe:
        probe.mkdir(parents=True, exist_ok=True)
    spec = topology.pools[POOL]
    node = Node(env, work_dir / f"node-{kind}.log", probe)
    started = time.monotonic()
    try:
        node.wait_ready(spec.concurrency if kind == "prefork" else 0)
        startup = sample(node.proc.pid, 0, started)
        print(f"soak: {kind} ready, {startup.node_rss_bytes / 2**20:.0f} MB", file=sys.stderr)
        samples: list[Sample] = []
        sent = done = 0
        next_sample = args.every
        last_progress = time.monotonic()
        run_started = time.monotonic()
        while done < jobs:
            if sent < jobs and sent - done <= args.window - 1000:
                batch = min(1000, jobs - sent)
                _send(url, batch)
                sent += batch
            time.sleep(POLL_S)  # polling the node's job count
            now_done = node.succeeded()
            if now_done > done:
                done, last_progress = now_done, time.monotonic()
            elif time.monotonic() - last_progress > STALL_TIMEOUT_S:
                raise TimeoutError(f"{kind}: no job finished for {STALL_TIMEOUT_S:g} s at {done}")
            while done >= next_sample:
                samples.append(sample(node.proc.pid, done, started))
                print(f"soak: {kind} {done} jobs", file=sys.stderr, flush=True)
                next_sample += args.every
        wall_s = time.monotonic() - run_started
    finally:
        code = node.stop()
    return {
        "pool_kind": kind,
        "concurrency": spec.concurrency,
        "pool_settings": extra,
        "jobs": done,
        "jobs_per_s": round(done / wall_s, 1),
        "exit_code": code,
        "startup": {
            "node_rss_bytes": startup.node_rss_bytes,
            "node_pss_bytes": startup.node_pss_bytes,
            "uss_bytes": startup.uss_bytes,
        },
        "growth_after_warmup": growth(samples, args.warmup),
        "samples": [vars(s) for s in samples],
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so the node and emulator stop.
    raise KeyboardInterrupt


def main() -> int:
    """Parse the arguments, run each pool kind in turn, print the JSON."""
    signal.signal(signal.SIGTERM, _interrupt)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs per pool kind")
    parser.add_argument("--pools", default=",".join(KINDS), help="pool kinds, comma-separated")
    parser.add_argument("--every", type=int, default=1000, help="sample every this many jobs")
    parser.add_argument("--warmup", type=int, default=1000, help="jobs before growth counts")
    parser.add_argument("--window", type=int, default=3000, help="most jobs waiting")
    parser.add_argument(
        "--pool-settings", default="", help='JSON merged into the pool, e.g. {"concurrency": 2}'
    )
    parser.add_argument("--probe", type=Path, help="tracemalloc snapshots go here")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO / ".conveyor" / "soak" / time.strftime("%Y%m%dT%H%M%S"),
    )
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = []
    with EmulatorProcess(log_path=args.work_dir / "emulator.log") as emulator:
        os.environ.update(
            AWS_ENDPOINT_URL=emulator.endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",  # noqa: S106 - the emulator accepts any
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
        )
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(key, None)
        for kind in (k for k in args.pools.split(",") if k):
            if kind not in KINDS:
                parser.error(f"unknown pool kind '{kind}' (known: {', '.join(KINDS)})")
            results.append(soak_one(kind, args.jobs, args, emulator))
    doc = {
        "started_at": args.work_dir.name,
        "jobs_per_kind": args.jobs,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "results": results,
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
