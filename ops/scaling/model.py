"""What a backend reports about a pool: desired and running replicas, and its nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class NodeInfo:
    """One worker node (a process, an ECS task, a pod)."""

    id: str
    #: ``running``, ``starting``, ``draining`` (stopping after SIGTERM) or the backend's own word.
    state: str
    host: str | None = None
    pid: int | None = None
    #: Wall-clock start time (Unix seconds), when known.
    started_at: float | None = None
    #: Jobs this node finished (succeeded / failed attempts), when it reports them.
    jobs_succeeded: int | None = None
    jobs_failed: int | None = None

    def uptime_s(self, now: float) -> float | None:
        """Seconds since the node started, when known."""
        return max(0.0, now - self.started_at) if self.started_at is not None else None

    def to_json(self, now: float) -> dict[str, Any]:
        """The node as ``workers ls --json`` prints it."""
        uptime = self.uptime_s(now)
        return {
            "id": self.id,
            "state": self.state,
            "host": self.host,
            "pid": self.pid,
            "started_at": self.started_at,
            "uptime_s": round(uptime, 1) if uptime is not None else None,
            "jobs_succeeded": self.jobs_succeeded,
            "jobs_failed": self.jobs_failed,
        }


@dataclass(frozen=True)
class PoolState:
    """Desired and observed replicas of one pool."""

    pool: str
    desired: int
    #: Nodes up and taking jobs (draining nodes are not counted).
    running: int
    nodes: list[NodeInfo] = field(default_factory=list)
    #: Nodes restarted after they exited unasked (local backend), when known.
    restarts: int | None = None
    #: Something the user should know (no supervisor running, service missing …).
    note: str | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        """The pool as ``workers ls --json`` prints it."""
        return {
            "pool": self.pool,
            "desired": self.desired,
            "running": self.running,
            "nodes": [n.to_json(now) for n in self.nodes],
            "restarts": self.restarts,
            "note": self.note,
        }
