"""Measurements taken from outside the measured processes.

* :class:`Trees`: CPU seconds (user + system) and RSS of process trees — the
  producer and worker processes and their children, never the emulator — with a
  sampler thread for peak RSS (sum over each tree's processes, so pages shared
  by a prefork pool count once per process: an upper bound), in all and of the
  worker nodes alone (roots named ``*worker*``), and a one-off PSS of the worker
  nodes (shared pages divided among the processes sharing them).
* :func:`read_counts`: the per-process request counts published by
  :mod:`benchmarks.counting`.
* :class:`EmulatorRecording`: the emulator's own record of the requests it served
  (moto's request recorder), the cross-check of the client-side counts.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qs

import psutil  # type: ignore[import-untyped]

#: How often the sampler looks at RSS.
RSS_SAMPLE_S = 0.25
#: A tree whose root's name contains this is a worker node's.
WORKER = "worker"


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Trees:
    """The process trees of one system (one root pid each); CPU and peak RSS."""

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}
        self.peak_rss_bytes = 0
        #: The same, of the worker nodes' trees only (no API, no producer).
        self.peak_worker_rss_bytes = 0
        #: pid -> (root name, CPU seconds) at the last sample, and the same for
        #: processes that exited while watched (their last sample).
        self._gone_cpu_s: dict[int, tuple[str, float]] = {}
        self._last_cpu_s: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def add(self, name: str, pid: int) -> None:
        """Watch the tree rooted at ``pid``."""
        with self._lock:
            self.roots[name] = pid

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by each watched tree (live processes and gone ones)."""
        self._sample_once()
        out: dict[str, float] = dict.fromkeys(self.roots, 0.0)
        with self._lock:
            for name, cpu in [*self._last_cpu_s.values(), *self._gone_cpu_s.values()]:
                out[name] = out.get(name, 0.0) + cpu
        return out

    def worker_pss_bytes(self) -> int:
        """The worker nodes' proportional set size now (Linux; 0 where unavailable)."""
        with self._lock:
            roots = [pid for name, pid in self.roots.items() if WORKER in name]
        total = 0
        for root in roots:
            for proc in _tree(root):
                try:
                    total += getattr(proc.memory_full_info(), "pss", 0)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
        return int(total)

    def close(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=2)

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            self._sample_once()

    def _sample_once(self) -> None:
        with self._lock:
            roots = list(self.roots.items())
        seen: dict[int, tuple[str, float]] = {}
        rss = worker_rss = 0
        for name, root in roots:
            for proc in _tree(root):
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        seen[proc.pid] = (name, times.user + times.system)
                        proc_rss = proc.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                rss += proc_rss
                if WORKER in name:
                    worker_rss += proc_rss
        with self._lock:
            for pid, cpu in self._last_cpu_s.items():
                if pid not in seen:
                    self._gone_cpu_s[pid] = cpu
            self._last_cpu_s = seen
            self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
            self.peak_worker_rss_bytes = max(self.peak_worker_rss_bytes, worker_rss)


def read_counts(directory: Path, roles: Iterable[str] | None = None) -> Counter[str]:
    """The sum of the published request counts (of ``roles`` only, when given)."""
    wanted = set(roles) if roles is not None else None
    total: Counter[str] = Counter()
    for path in directory.glob("*.json"):
        role = path.stem.rsplit("-", 1)[0]
        if wanted is not None and role not in wanted:
            continue
        try:
            total.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced right now: os.replace makes that rare
    return total


def settle_counts(directory: Path, quiet_s: float = 0.6, timeout_s: float = 10.0) -> Counter[str]:
    """Read the counts once they have stopped changing for ``quiet_s`` (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = read_counts(directory)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = read_counts(directory)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_s:
            break
    return last


def diff(after: Counter[str], before: Counter[str]) -> dict[str, int]:
    """``after - before`` by action, keeping only positive entries."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0) > 0}


def _post(url: str) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - http only
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:  # loopback emulator only
        body: bytes = response.read()
        return body


class EmulatorRecording:
    """moto's request recorder (``/moto-api/recorder/*``): what the emulator itself saw."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def start(self) -> None:
        """Forget what was recorded and record from now on."""
        _post(f"{self.endpoint_url}/moto-api/recorder/reset-recording")
        _post(f"{self.endpoint_url}/moto-api/recorder/start-recording")

    def stop_and_count(self) -> dict[str, int]:
        """Stop recording; the recorded requests by ``service.Operation``."""
        _post(f"{self.endpoint_url}/moto-api/recorder/stop-recording")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.endpoint_url}/moto-api/recorder/download-recording") as r:
            text = r.read().decode("utf-8", "replace")
        counts: Counter[str] = Counter()
        # moto's server threads append entries to one file without a lock, so a long
        # entry (a PublishBatch body) can be split by another one: do not parse whole
        # lines, find each entry's opening (headers, then the start of the body).
        for match in _ENTRY.finditer(text):
            counts[_action(json.loads(match.group(1)), match.group(2))] += 1
        return dict(sorted(counts.items()))


_ENTRY = re.compile(
    r'\{"headers": (\{[^{}]*\}), "method": "[A-Z]+", "url": "[^"]*", "body": "([^"]{0,64})'
)


def _action(headers: dict[str, str], body_start: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    target = lowered.get("x-amz-target")  # JSON protocol: "AmazonSQS.ReceiveMessage"
    if target:
        prefix, _, operation = target.partition(".")
        return f"{'sqs' if 'SQS' in prefix else prefix.lower()}.{operation}"
    scope = lowered.get("authorization", "")  # ... Credential=KEY/DATE/REGION/SERVICE/...
    parts = scope.split("/")
    service = parts[3] if len(parts) > 4 else "?"
    body = body_start
    with contextlib.suppress(ValueError):
        body = base64.b64decode(body_start[: len(body_start) // 4 * 4]).decode("ascii")
    action = parse_qs(body).get("Action", ["?"])[0]  # query protocol (SNS)
    return f"{service}.{action}"
