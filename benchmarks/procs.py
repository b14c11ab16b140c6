"""Starting and stopping the measured processes (each in its own process group)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil  # type: ignore[import-untyped]


@dataclass
class Proc:
    """A process this benchmark started, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid


def counted(role: str, module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with the request-counting hook installed."""
    return [sys.executable, "-m", "benchmarks.counting", role, "-m", module, *args]


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Proc:
    """Start ``argv`` in a new session (process group = its pid), output to ``log_dir/name.log``."""
    log = (log_dir / f"{name}.log").open("ab")
    popen = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(name, popen, log)


def stop(procs: list[Proc], grace_s: float = 30.0) -> dict[str, int]:
    """SIGTERM each, wait up to ``grace_s`` in all, then SIGKILL it and its descendants."""
    trees = {proc.name: _descendants(proc) for proc in procs}
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    codes = {}
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
        kill(proc, trees[proc.name])
        codes[proc.name] = proc.popen.returncode
        proc.log.close()
    return codes


def _descendants(proc: Proc) -> list[psutil.Process]:
    try:
        return list(psutil.Process(proc.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def kill(proc: Proc, descendants: list[psutil.Process] | None = None) -> None:
    """SIGKILL ``proc`` if alive, and the descendants it had (e.g. orphaned pool children).

    psutil checks each process's identity (pid and start time) before signalling,
    so a reused pid is never hit.
    """
    found = descendants if descendants is not None else _descendants(proc)
    if proc.popen.poll() is None:
        proc.popen.kill()
        proc.popen.wait()
    for child in found:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
