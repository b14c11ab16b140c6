"""The embedded emulator as a child process, for tests, fault tests and local runs.

:class:`EmulatorProcess` runs ``python -m infra.emulator`` in its own process
group, so the fixes are applied in that process only, it can be killed and
restarted on the same port like a real dependency, and a Ctrl-C in the parent's
terminal is the parent's to handle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Final
from urllib.parse import urlsplit

import infra
from infra.emulator.fixes import resolve_fix_selection
from infra.emulator.server import ENDPOINT_LINE_PREFIX
from infra.settings import child_environment

_PROJECT_ROOT: Final = str(Path(infra.__file__).resolve().parent.parent)
_OUTPUT_TAIL_LINES: Final = 200

# moto decides which service a request is for from the credential scope of its
# Authorization header; it does not check the signature. Without one it guessed S3.
_LIST_QUEUES_BODY: Final = b"Action=ListQueues&Version=2012-11-05"
_LIST_QUEUES_HEADERS: Final = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Authorization": (
        "AWS4-HMAC-SHA256 Credential=conveyor/20250101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0"
    ),
}
# A local endpoint is never reached through the environment's HTTP(S)_PROXY.
_DIRECT: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> tuple[int, bytes]:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an HTTP endpoint: {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked above
    try:
        with _DIRECT.open(request, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until_ready(endpoint: str, timeout_s: float = 30.0) -> None:
    """Poll SQS ListQueues at ``endpoint`` until it answers; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    pause_s = 0.02
    while True:
        remaining_s = deadline - time.monotonic()
        try:
            status, body = _post(
                f"{endpoint}/",
                _LIST_QUEUES_BODY,
                _LIST_QUEUES_HEADERS,
                max(0.1, min(5.0, remaining_s)),
            )
            if status == 200 and b"ListQueues" in body:
                return
            problem = f"HTTP {status}: {body[:200]!r}"
        except OSError as exc:  # refused, reset, timed out: not listening yet
            problem = repr(exc)
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise TimeoutError(f"no SQS answer from {endpoint} within {timeout_s} s ({problem})")
        time.sleep(min(pause_s, remaining_s))  # poll interval, bounded by the deadline
        pause_s = min(pause_s * 2, 0.5)


class _OutputPump:
    """Drains the child's stdout and stderr so it never blocks on a full pipe.

    Keeps the last lines for error messages, appends them to ``log_path`` if
    given, and picks the endpoint line out of stdout.
    """

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path | None) -> None:
        self.tail: deque[str] = deque(maxlen=_OUTPUT_TAIL_LINES)
        self.endpoint: str | None = None
        self.announced = threading.Event()  # endpoint seen, or stdout closed without it
        self._log = log_path.open("a", encoding="utf-8") if log_path else None
        self._lock = threading.Lock()
        assert process.stdout is not None
        assert process.stderr is not None
        self._threads = [
            threading.Thread(target=self._drain, args=(process.stdout, True), daemon=True),
            threading.Thread(target=self._drain, args=(process.stderr, False), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream: IO[bytes], is_stdout: bool) -> None:
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                if is_stdout and self.endpoint is None and line.startswith(ENDPOINT_LINE_PREFIX):
                    self.endpoint = line.removeprefix(ENDPOINT_LINE_PREFIX).strip()
                    self.announced.set()
                with self._lock:
                    self.tail.append(line)
                    if self._log is not None:
                        self._log.write(line + "\n")
                        self._log.flush()
        if is_stdout:
            self.announced.set()

    def close(self, timeout_s: float) -> None:
        """Wait for both pipes to reach end of file (the child has exited), then close the log."""
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.tail)


class EmulatorProcess:
    """``python -m infra.emulator`` as a child process in its own process group.

    ``port=0`` lets the child pick a free port; :meth:`restart` reuses whatever
    port it got. ``fixes``: None lets the child read ``CONVEYOR_EMULATOR_FIXES``
    (it inherits the environment), otherwise a selection as for
    :class:`infra.emulator.Emulator`, validated here. The child's output is
    drained continuously; :meth:`output` returns its last lines, and ``log_path``
    keeps all of it. Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        fixes: str | Iterable[str] | None = None,
        startup_timeout_s: float = 30.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._port = port
        self._fixes = None if fixes is None else resolve_fix_selection(fixes)
        self.startup_timeout_s = startup_timeout_s
        self.log_path = Path(log_path) if log_path is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._pump: _OutputPump | None = None
        self._endpoint_url: str | None = None

    # --- what it is -------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``; unchanged by :meth:`kill` and :meth:`restart`."""
        if self._endpoint_url is None:
            raise RuntimeError("the emulator process has not been started")
        return self._endpoint_url

    @property
    def port(self) -> int:
        """The port it listens on (the requested one until it first started)."""
        return self._port

    @property
    def pid(self) -> int:
        """Process id of the current (or last) child, also its process group id."""
        if self._process is None:
            raise RuntimeError("the emulator process has not been started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the child is alive."""
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """The child's last lines of output (stdout and stderr)."""
        return self._pump.text() if self._pump is not None else ""

    # --- lifecycle --------------------------------------------------------------------

    def start(self) -> str:
        """Start the child, wait until it serves SQS, and return the endpoint URL.

        Raises TimeoutError if it has not announced its endpoint and answered
        ListQueues within ``startup_timeout_s``, RuntimeError if it exits first;
        both carry the child's output. The child is stopped on failure.
        """
        if self.running:
            raise RuntimeError(f"the emulator process is already running (pid {self.pid})")
        deadline = time.monotonic() + self.startup_timeout_s
        command = [sys.executable, "-m", "infra.emulator", "--port", str(self._port)]
        if self._fixes is not None:
            command += ["--fixes", ",".join(self._fixes) or "none"]
        env = child_environment()
        # The child must import this checkout's `infra` whatever its working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: killpg reaches it alone
        )
        self._pump = _OutputPump(self._process, self.log_path)
        try:
            self._endpoint_url = self._await_endpoint(deadline)
            wait_until_ready(self._endpoint_url, max(0.0, deadline - time.monotonic()))
        except BaseException:
            self._terminate(signal.SIGKILL, timeout_s=5.0)
            raise
        port = urlsplit(self._endpoint_url).port
        assert port is not None  # the child prints http://HOST:PORT
        self._port = port
        return self._endpoint_url

    def _await_endpoint(self, deadline: float) -> str:
        assert self._pump is not None
        assert self._process is not None
        if not self._pump.announced.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(
                f"the emulator did not announce its endpoint within {self.startup_timeout_s} s; "
                f"output so far:\n{self.output()}"
            )
        if self._pump.endpoint is None:  # stdout closed first: the child is exiting
            returncode = self._process.wait(max(0.1, deadline - time.monotonic()))
            self._pump.close(timeout_s=5.0)
            raise RuntimeError(
                f"the emulator exited with status {returncode} before serving; "
                f"output:\n{self.output()}"
            )
        return self._pump.endpoint

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the child, then SIGKILL if alive after ``timeout_s``; no-op if not running."""
        self._terminate(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL the child at once (for fault tests: the emulator dies, state and all)."""
        self._terminate(signal.SIGKILL, timeout_s=10.0)

    def restart(self) -> str:
        """Stop the child if running, start a new one on the same port; returns the endpoint.

        The new emulator starts empty: queues and messages are gone, as after a crash.
        """
        self.stop()
        return self.start()

    def reset(self) -> None:
        """Drop every resource in the emulator (``POST /moto-api/reset``)."""
        status, body = _post(f"{self.endpoint_url}/moto-api/reset", b"", {}, timeout_s=30.0)
        if status != 200:
            raise RuntimeError(f"emulator reset failed: HTTP {status}: {body[:200]!r}")

    def _terminate(self, first_signal: signal.Signals, timeout_s: float) -> None:
        process, pump = self._process, self._pump
        if process is None:
            return
        if process.poll() is None:  # only signal a child not yet reaped: its pid is still ours
            try:
                os.killpg(process.pid, first_signal)
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                process.wait()
        if pump is not None:
            pump.close(timeout_s=5.0)

    def __enter__(self) -> EmulatorProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
