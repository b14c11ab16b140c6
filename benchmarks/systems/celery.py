"""Driver for vanilla Celery on SQS (see :mod:`benchmarks.systems.celery_app`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.procs import Proc, counted, spawn
from benchmarks.systems.common import RunContext, create_queue

NAME = "celery"


def setup(run: RunContext) -> dict[str, Any]:
    """Create the queue (and its DLQ) Celery consumes; return what the processes need."""
    name = f"{run.prefix}-celery"
    url = create_queue(name)
    return {"queue": name, "queue_url": url}


def _env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    return {
        **run.env,
        "BENCH_CELERY_BROKER": f"sqs://testing:testing@127.0.0.1:{run.port}",
        "BENCH_CELERY_QUEUE": config["queue"],
        "BENCH_CELERY_QUEUE_URL": config["queue_url"],
    }


def start(run: RunContext, config: dict[str, Any]) -> list[Proc]:
    """One Celery worker node: prefork pool of ``run.concurrency`` processes."""
    argv = counted(
        "worker",
        "celery",
        "-A",
        "benchmarks.systems.celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(run.concurrency),
        "--loglevel",
        "WARNING",
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
    )
    return [spawn(f"{NAME}-worker", argv, _env(run, config), run.log_dir)]


def producer_env(run: RunContext, config: dict[str, Any]) -> dict[str, str]:
    """What the producer process needs in its environment."""
    return _env(run, config)


def enqueuer(config: dict[str, Any]) -> tuple[int, Callable[[list[dict[str, Any]]], None]]:
    """(jobs per call, enqueue function): vanilla Celery sends one message per task."""
    from benchmarks.systems.celery_app import work  # noqa: PLC0415 - reads the env

    def enqueue(bodies: list[dict[str, Any]]) -> None:
        for body in bodies:
            work.apply_async(kwargs=body)

    return 1, enqueue
