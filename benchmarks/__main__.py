"""``python -m benchmarks [--n N] [--out FILE] ...``: run the benchmark, print JSON and tables.

Celery, the raw boto3 loop and Conveyor at concurrency 2 and 8 (no-op and 5 ms CPU
jobs), then Conveyor's prefork, threads and asyncio pools at concurrency 32 on
100 ms I/O jobs (:mod:`benchmarks.run`), and issue 17's targets, MET / MISS / n/a
(:mod:`benchmarks.report`).

Then the delayed-jobs benchmark (:mod:`benchmarks.delayed`: lateness and requests per
job for a 30 s and a 1 h delay), under ``delayed_jobs`` in the JSON; ``--delayed-only``
runs just that (about two minutes), ``--no-delayed`` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from types import FrameType

from benchmarks import delayed, report
from benchmarks.run import Settings, run
from benchmarks.systems import SYSTEMS


def _meta() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1m": round(os.getloadavg()[0], 2),
        "started_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": {p: version(p) for p in ("celery", "kombu", "boto3", "moto")},
    }


def _figure_args(argv: list[str]) -> list[str]:
    """``argv`` without the options that only say where output goes."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--out", "--results-md", "--work-dir"):
            skip = True
        elif not arg.startswith(("--out=", "--results-md=", "--work-dir=")):
            out.append(arg)
    return out


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every process started is stopped.
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--n", type=int, default=d.n, help="jobs per throughput phase")
    parser.add_argument("--window", type=int, default=d.window, help="most jobs waiting")
    parser.add_argument(
        "--concurrencies",
        default=",".join(map(str, d.concurrencies)),
        help="throughput concurrencies, comma-separated (the first also: idle, latency)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="one throughput concurrency (as --concurrencies N)"
    )
    parser.add_argument("--io-n", type=int, default=d.io_n, help="jobs in each I/O phase")
    parser.add_argument("--io-ms", type=float, default=d.io_ms, help="each I/O job's wait")
    parser.add_argument("--io-concurrency", type=int, default=d.io_concurrency)
    parser.add_argument(
        "--io-pools", default=",".join(d.io_pools), help="Conveyor pools for the I/O phase"
    )
    parser.add_argument("--idle-s", type=float, default=d.idle_s)
    parser.add_argument("--latency-jobs", type=int, default=d.latency_jobs)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--work-dir", type=Path, default=d.work_dir)
    parser.add_argument("--deadline-s", type=float, default=d.deadline_s, help="give up after")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--results-md", type=Path, help="also write a RESULTS.md here")
    parser.add_argument("--delayed-jobs", type=int, default=100, help="jobs per delay scenario")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--delayed-only", action="store_true", help="only the delayed jobs")
    which.add_argument("--no-delayed", action="store_true", help="skip the delayed jobs")
    return parser


def main() -> int:
    """Parse arguments, run, print the table to stderr and the JSON to stdout (or --out)."""
    signal.signal(signal.SIGTERM, _interrupt)
    args = _parser().parse_args()
    if args.delayed_only:
        found = {"meta": _meta(), "delayed_jobs": delayed.run(jobs=args.delayed_jobs)}
        text = json.dumps(found, indent=2)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text + "\n")
        print(text)
        print(delayed.table(found["delayed_jobs"]), file=sys.stderr)
        return 0
    settings = Settings(
        n=args.n,
        window=args.window,
        concurrencies=(
            (args.concurrency,)
            if args.concurrency
            else tuple(int(c) for c in args.concurrencies.split(",") if c)
        ),
        io_n=args.io_n,
        io_ms=args.io_ms,
        io_concurrency=args.io_concurrency,
        io_pools=tuple(p for p in args.io_pools.split(",") if p),
        idle_s=args.idle_s,
        latency_jobs=args.latency_jobs,
        systems=tuple(s for s in args.systems.split(",") if s),
        work_dir=args.work_dir,
        deadline_s=args.deadline_s,
    )
    meta = _meta()  # the machine as the run starts
    started = time.monotonic()
    results = run(settings)
    meta["duration_s"] = round(time.monotonic() - started, 1)
    # Other work on the machine changes during a run: the load at its end as well.
    meta["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    doc = report.build(results, {**asdict(settings), "work_dir": str(settings.work_dir)}, meta)
    if not args.no_delayed:
        doc["delayed_jobs"] = delayed.run(jobs=args.delayed_jobs)
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    if args.results_md:
        args.results_md.parent.mkdir(parents=True, exist_ok=True)
        command = " ".join(["python -m benchmarks", *_figure_args(sys.argv[1:])])
        args.results_md.write_text(report.markdown(doc, command) + "\n")
    print(report.table(doc), file=sys.stderr)
    if "delayed_jobs" in doc:
        print(delayed.table(doc["delayed_jobs"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
