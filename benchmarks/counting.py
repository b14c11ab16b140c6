"""Count the AWS requests of a client process with a botocore hook, and publish the count.

Run a client under it: ``python -m benchmarks.counting ROLE -m MODULE ARGS...``. Every
botocore client the process (or a forked child) creates gets a ``before-sign`` hook —
signing happens once per HTTP attempt, so retries count, and so do the calls kombu
sends through its own async HTTP client with a boto3 client's signer. Every
:data:`SNAPSHOT_INTERVAL_S` the process writes its counts, by ``service.Operation``,
to ``$BENCH_COUNTS_DIR/ROLE-PID.json`` (atomically), so the driver can read the count
at any phase boundary without signalling the process.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import botocore.session

COUNTS_ENV = "BENCH_COUNTS_DIR"
SNAPSHOT_INTERVAL_S = 0.2

_lock = threading.Lock()
_counts: Counter[str] = Counter()
_role = "client"


def _count(event_name: str, **_kwargs: Any) -> None:
    _, service, operation = event_name.split(".", 2)  # before-sign.sqs.ReceiveMessage
    with _lock:
        _counts[f"{service}.{operation}"] += 1


def _install() -> None:
    original = botocore.session.Session.create_client

    def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-sign", _count)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def snapshot() -> dict[str, int]:
    """This process's counts so far."""
    with _lock:
        return dict(_counts)


def _write(directory: Path) -> None:
    path = directory / f"{_role}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot()))
    os.replace(tmp, path)


def _publisher(directory: Path, stop: threading.Event) -> None:
    last: dict[str, int] | None = None
    while not stop.wait(SNAPSHOT_INTERVAL_S):
        now = snapshot()
        if now != last:
            _write(directory)
            last = now


def _start_publisher() -> None:
    directory = Path(os.environ[COUNTS_ENV])
    stop = threading.Event()
    threading.Thread(target=_publisher, args=(directory, stop), daemon=True).start()


def _after_fork_in_child() -> None:
    # A forked child (Celery's prefork pool) starts from zero and publishes its own file.
    # (A lock held by another thread at fork time stays held in the child: replace it.)
    global _lock  # noqa: PLW0603 - the module's one lock, replaced after fork
    _lock = threading.Lock()
    _counts.clear()
    _start_publisher()


def main(argv: list[str]) -> None:
    """``ROLE -m MODULE ARGS...``: install the hook, then run MODULE as ``__main__``."""
    global _role
    if len(argv) < 3 or argv[1] != "-m":
        raise SystemExit("usage: python -m benchmarks.counting ROLE -m MODULE [ARGS...]")
    _role, module, rest = argv[0], argv[2], argv[3:]
    _install()
    os.register_at_fork(after_in_child=_after_fork_in_child)
    _start_publisher()
    import atexit  # noqa: PLC0415

    atexit.register(_write, Path(os.environ[COUNTS_ENV]))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
