"""Local scaling state: desired replicas per pool and the supervisor's status, as JSON files.

One directory per project and environment (``<state dir>/<project>-<environment>``),
so ``conveyor workers scale`` in one shell reaches the supervisor that
``conveyor workers up`` (or ``conveyor up``) runs in another. The base directory
is ``CONVEYOR_STATE_DIR``, by default ``.conveyor/state`` under the current
directory. Files are replaced atomically (write, then rename), so a reader never
sees half a file; read-modify-write of the desired state holds an exclusive lock.
The state directory is private (0700) and its files 0600: they name processes the
supervisor will signal, and a temporary file with a guessable name could be
planted (a symlink) by another user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.settings import ScalingSettings, load_settings
from infra.topology import Topology

STATE_DIR_ENV = ScalingSettings.env_name("state_dir")
DEFAULT_STATE_DIR = Path(".conveyor") / "state"
#: A supervisor rewrites its status at least this often; older means it is gone.
STATUS_STALE_S = 10.0


def state_dir_for(topology: Topology, base: Path | None = None) -> Path:
    """The state directory of ``topology``'s project and environment."""
    root = base or load_settings().scaling.state_dir or DEFAULT_STATE_DIR
    return root / f"{topology.project}-{topology.environment}"


#: Permissions of the state directory and of the files in it.
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if missing; ``path`` itself is made 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    # mkdir's mode does not apply to a directory that existed already (an older
    # release made it 0755), and the umask may have narrowed it further.
    if path.stat().st_mode & 0o777 != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A file descriptor of ``path``, created 0600 if missing (never following a symlink)."""
    return os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON (mode 0600), never leaving a partial file.

    The temporary file comes from ``mkstemp`` (an unpredictable name, created
    exclusively, 0600) in the same directory, so the rename is atomic.
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(value, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it does not exist (or is not JSON)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, OSError):
        return None  # replaced mid-read on a filesystem without atomic rename: next read
    except RecursionError:
        return None  # not a file this code wrote


class DesiredStore:
    """Desired replicas per pool, in ``<state dir>/desired.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "desired.json"

    def read(self) -> dict[str, int]:
        """Every stored pool's desired replicas (pools never scaled are absent)."""
        found = read_json(self.path)
        pools = found.get("pools", {}) if isinstance(found, dict) else {}
        if not isinstance(pools, dict):
            return {}
        return {
            str(k): int(v)
            for k, v in pools.items()
            if isinstance(v, int) and not isinstance(v, bool)
        }

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        private_dir(self.state_dir)
        with os.fdopen(open_private(self.state_dir / "desired.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def update(self, desired: Mapping[str, int]) -> dict[str, int]:
        """Store ``desired`` (merged over the rest); returns the values stored before."""
        with self._locked():
            before = self.read()
            write_json_atomic(
                self.path, {"pools": {**before, **desired}, "updated_at": time.time()}
            )
        return before


class DecisionJournal:
    """The autoscaler's recent decisions with their inputs, in ``<state dir>/decisions.json``.

    The autoscaler logs every decision (``autoscale.decision``); this keeps the last
    :attr:`KEEP` of them where the console on the same machine can show them. A
    ``hold`` repeats every interval, so one is kept only when its reason or numbers
    differ from the pool's previous entry.
    """

    KEEP = 50

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / "decisions.json"

    def read(self) -> list[dict[str, Any]]:
        """The kept decisions, oldest first (each with ``at``, Unix seconds)."""
        found = read_json(self.path)
        entries = found.get("decisions") if isinstance(found, dict) else None
        return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []

    def append(self, decisions: list[dict[str, Any]]) -> None:
        """Add ``decisions`` (``Decision.to_json()`` plus ``at``); drops repeated holds."""
        with DesiredStore(self.state_dir)._locked():
            kept = self.read()
            for decision in decisions:
                last = next((e for e in reversed(kept) if e.get("pool") == decision["pool"]), None)
                same = last is not None and all(
                    last.get(k) == decision.get(k) for k in decision if k != "at"
                )
                if decision.get("action") != "hold" or not same:
                    kept.append(decision)
            write_json_atomic(self.path, {"decisions": kept[-self.KEEP :]})


@dataclass(frozen=True)
class SupervisorStatus:
    """What a supervisor last wrote about itself and its nodes."""

    pid: int
    host: str
    updated_at: float
    pools: dict[str, Any]
    #: The whole document (fields this class does not name, e.g. ``boot_id``).
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def alive(self, now: float | None = None) -> bool:
        """The supervisor wrote recently (and, on this host, its process exists)."""
        if (now or time.time()) - self.updated_at > STATUS_STALE_S:
            return False
        if self.host == os.uname().nodename:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return True


def status_path(state_dir: Path) -> Path:
    """Where the supervisor of ``state_dir`` writes its status."""
    return state_dir / "supervisor.json"


def read_status(state_dir: Path) -> SupervisorStatus | None:
    """The supervisor's last status, or None if none ever ran here."""
    found = read_json(status_path(state_dir))
    if not isinstance(found, dict):
        return None
    try:
        return SupervisorStatus(
            pid=int(found["pid"]),
            host=str(found["host"]),
            updated_at=float(found["updated_at"]),
            pools=dict(found.get("pools", {})),
            raw=found,
        )
    except (KeyError, TypeError, ValueError):
        return None
