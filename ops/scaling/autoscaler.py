"""The backlog autoscaler: per pool, desired nodes follow the backlog of its queues.

Every ``autoscale.interval_s`` a pool's backlog (visible + in-flight messages of
its queues, AWS's backlog-per-instance metric) gives a recommendation::

    recommended = clamp(ceil(backlog / target_backlog_per_worker), replicas.min, replicas.max)

* scale out at once to the recommendation, then not again before
  ``scale_out_cooldown_s``;
* scale in only to the highest recommendation of the last ``scale_in_cooldown_s``
  (the backlog must have stayed low that long; a Kubernetes HPA stabilization
  window), and never before the autoscaler has watched the pool that long.

Every decision, including "hold", is logged as ``autoscale.decision`` with its
inputs. :class:`PoolPolicy` is pure (time is passed in); :class:`Autoscaler`
reads the backlog, asks the policies and applies through a backend.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from infra.errors import AwsError
from infra.logs import get_logger
from infra.topology import Topology
from infra.topology.model import Pool
from ops.scaling.backends import Backend
from ops.scaling.backlog import Backlog, BacklogReader
from ops.scaling.errors import ScalingError
from ops.scaling.store import DecisionJournal

log = get_logger("conveyor.autoscaler")

Action = Literal["scale_out", "scale_in", "hold"]


@dataclass(frozen=True)
class Decision:
    """What the autoscaler decided for one pool at one tick, and why."""

    pool: str
    action: Action
    #: Desired replicas before the decision, and after it.
    current: int
    desired: int
    recommended: int
    backlog: int
    visible: int
    in_flight: int
    target_backlog_per_worker: int
    min_replicas: int
    max_replicas: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The decision as logged and printed by ``--dry-run``."""
        return asdict(self)

    def render(self) -> str:
        """One line for people."""
        change = f"{self.current} → {self.desired}" if self.action != "hold" else f"{self.current}"
        return (
            f"{self.pool}: {self.action.replace('_', '-')} {change}  backlog {self.backlog}"
            f" (visible {self.visible}, in flight {self.in_flight}) / target"
            f" {self.target_backlog_per_worker} → {self.recommended}"
            f" [{self.min_replicas}..{self.max_replicas}]: {self.reason}"
        )


class PoolPolicy:
    """The decisions of one pool over time (pure: ``now_s`` is given)."""

    def __init__(self, name: str, pool: Pool, started_s: float) -> None:
        self.name = name
        self.pool = pool
        self.started_s = started_s
        self._recommendations: deque[tuple[float, int]] = deque()
        self._last_scale_out_s: float | None = None

    def recommend(self, backlog: int) -> int:
        """``clamp(ceil(backlog / target), min, max)``."""
        target = self.pool.autoscaling.target_backlog_per_worker
        bounds = self.pool.replicas
        return max(bounds.min, min(bounds.max, math.ceil(backlog / target)))

    def decide(self, now_s: float, backlog: Backlog, current: int) -> Decision:
        """The decision for ``backlog`` when the pool's desired replicas are ``current``."""
        auto = self.pool.autoscaling
        recommended = self.recommend(backlog.total)
        self._recommendations.append((now_s, recommended))
        window_start = now_s - auto.scale_in_cooldown_s
        while self._recommendations and self._recommendations[0][0] < window_start:
            self._recommendations.popleft()

        action: Action = "hold"
        desired = current
        if recommended > current:
            since = None if self._last_scale_out_s is None else now_s - self._last_scale_out_s
            if since is not None and since < auto.scale_out_cooldown_s:
                reason = (
                    f"scale-out cooldown: {auto.scale_out_cooldown_s - since:.1f} s left"
                    f" of {auto.scale_out_cooldown_s:g} s"
                )
            else:
                action, desired = "scale_out", recommended
                self._last_scale_out_s = now_s
                reason = "backlog above target"
        elif recommended < current:
            watched_s = now_s - self.started_s
            stable = max(r for _, r in self._recommendations)
            if watched_s < auto.scale_in_cooldown_s:
                reason = (
                    f"backlog low, but watched for only {watched_s:.1f} s of the"
                    f" {auto.scale_in_cooldown_s:g} s scale-in cooldown"
                )
            elif stable >= current:
                low_s = now_s - max(t for t, r in self._recommendations if r >= current)
                reason = (
                    f"backlog low for {low_s:.1f} s of the {auto.scale_in_cooldown_s:g} s"
                    " scale-in cooldown"
                )
            else:
                action, desired = "scale_in", stable
                reason = f"backlog low for the {auto.scale_in_cooldown_s:g} s scale-in cooldown"
        else:
            reason = "at the recommendation"
        return Decision(
            pool=self.name,
            action=action,
            current=current,
            desired=desired,
            recommended=recommended,
            backlog=backlog.total,
            visible=backlog.visible,
            in_flight=backlog.in_flight,
            target_backlog_per_worker=auto.target_backlog_per_worker,
            min_replicas=self.pool.replicas.min,
            max_replicas=self.pool.replicas.max,
            reason=reason,
        )


class Autoscaler:
    """Runs the policies of ``pools`` against a backend, each pool at its own interval."""

    def __init__(
        self,
        topology: Topology,
        backend: Backend,
        *,
        pools: list[str] | None = None,
        dry_run: bool = False,
        backlog: BacklogReader | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_decision: Callable[[Decision], None] | None = None,
        log_decisions: bool = True,
        journal: DecisionJournal | None = None,
    ) -> None:
        """``log_decisions`` False: ``on_decision`` alone reports them (a CLI printing each
        decision on stdout does not want the same decision again as a log line).

        ``journal``: where recent decisions are kept for the console; by default the
        ``local`` backend's state directory (other backends' autoscalers run elsewhere:
        their decisions are in the logs).
        """
        self.journal = journal
        if journal is None and isinstance(getattr(backend, "state_dir", None), Path):
            self.journal = DecisionJournal(backend.state_dir)  # type: ignore[attr-defined]
        self.topology = topology
        self.log_decisions = log_decisions
        self.backend = backend
        self.pools = list(pools or topology.pools)
        self.dry_run = dry_run
        self.backlog = backlog or BacklogReader(topology)
        self._clock = clock
        self.on_decision = on_decision
        started = clock()
        self.policies = {p: PoolPolicy(p, topology.pools[p], started) for p in self.pools}
        self._due = dict.fromkeys(self.pools, started)

    def tick(self, pools: list[str] | None = None) -> list[Decision]:
        """Decide (and unless ``dry_run`` apply) for ``pools`` now (default: every pool)."""
        names = pools or self.pools
        current = self.backend.pools(names)
        now = self._clock()
        decisions = []
        changes: dict[str, int] = {}
        for name in names:
            decision = self.policies[name].decide(
                now, self.backlog.read(name), current[name].desired
            )
            decisions.append(decision)
            if self.log_decisions:
                log.info("autoscale.decision", dry_run=self.dry_run, **decision.to_json())
            if decision.action != "hold":
                changes[name] = decision.desired
            if self.on_decision is not None:
                self.on_decision(decision)
        if changes and not self.dry_run:
            self.backend.set_desired(changes)
        self._keep(decisions)
        return decisions

    def _keep(self, decisions: list[Decision]) -> None:
        if self.journal is None or self.dry_run:
            return  # a dry run changed nothing: not a decision the console should list
        at = time.time()
        try:
            self.journal.append([{"at": at, **d.to_json()} for d in decisions])
        except OSError as exc:  # the journal is for people; scaling goes on without it
            log.warning("autoscale.journal_failed", error=str(exc))

    def run(self, stop: threading.Event) -> None:
        """Tick each pool every ``autoscale.interval_s`` until ``stop`` is set."""
        log.info("autoscaler.started", pools=self.pools, dry_run=self.dry_run)
        while not stop.is_set():
            now = self._clock()
            due = [p for p in self.pools if self._due[p] <= now]
            if due:
                try:
                    self.tick(due)
                except (AwsError, ScalingError) as exc:
                    # AWS or the backend failed this once: keep the replicas, try next interval.
                    log.error("autoscale.failed", pools=due, error=str(exc))
                for pool in due:
                    self._due[pool] = now + self.topology.pools[pool].autoscaling.interval_s
            stop.wait(max(0.05, min(self._due.values()) - self._clock()))
        log.info("autoscaler.stopped")
