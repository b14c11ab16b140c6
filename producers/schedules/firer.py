"""Firing the due ticks of queues.yaml's schedules, exactly once across scheduler replicas.

The scheduler role calls :meth:`ScheduleFirer.fire_due` every turn. Per schedule:

1. Nothing is asked of AWS until a tick is due (the firer remembers when the next one
   is); a due tick fires at its time plus its jitter offset (the same on every replica).
2. The schedule's state is read (paused? the cursor: every tick up to it is settled).
3. The candidate ticks are those after the cursor: the ones still *on time* (fired no
   later than ``misfire_grace_s`` after they were due) and, for ``misfire: catch_up``,
   the last ``catch_up_limit`` *missed* ones. Missed ticks beyond that, or all of them
   with ``misfire: skip``, are skipped; so are the ticks of a paused schedule.
4. Each tick to fire is claimed with a conditional put (one item per schedule and
   tick): the replica that wins publishes it through the API's pipeline
   (:class:`producers.enqueue.Enqueuer`: the same envelope, fan-out, claim check and
   ledger record) under a job id derived from the schedule and the tick
   (:func:`schedule_job_id`), so a rare double publish (a lease taken over from a
   replica that was slow, not dead) is the same job, which the idempotency guard
   collapses. A replica that loses the claim moves on.
5. The cursor moves over the settled prefix of the candidates (a conditional update
   that never moves it back), so a later turn, on any replica, does not look at them again.

DynamoDB or SNS failing for one schedule never stops the others, nor the loop: the
turn logs it and the tick is tried again on the next turn.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from infra.aws.names import timers_table_name
from infra.claim_check import claim_check_for
from infra.cron import Recurrence, jitter_offset_s, tick_id
from infra.errors import ConfigError, ConveyorError
from infra.ledger import ledger_for
from infra.logs import get_logger
from infra.topology import Schedule, Topology, payload_model
from infra.validation import errors_line
from producers.enqueue import Enqueuer, Job, Outcome, message_group_id
from producers.publisher import Publisher
from producers.schedules import metrics
from producers.schedules.store import ScheduleState, ScheduleStore, ScheduleStoreError

log = get_logger("conveyor.schedules")

#: A claim's lease: a replica that claimed a tick and did not settle it within this
#: long (killed, hung) loses it to another replica, which publishes the same job id.
#: Well above a publish's worst case (SNS and S3 timeouts).
CLAIM_LEASE_S = 60.0
#: How soon a tick that could not be settled (a live lease elsewhere, a failed publish
#: or table call) is looked at again.
RETRY_S = 1.0
#: ``scope`` of the enqueue pipeline (it namespaces idempotency keys; schedules use none).
SCOPE = "schedules"
_JOB_ID_NAMESPACE = uuid.UUID("6f1d7c52-3a0e-5b8e-9c41-2d7f0e8a9b13")


def schedule_job_id(topology: Topology, name: str, tick: datetime) -> str:
    """The job id of ``tick`` of schedule ``name``: a UUID 5 of project, environment,
    schedule and tick, the same on every replica and every attempt."""
    key = f"{topology.project}/{topology.environment}/{name}/{tick_id(tick)}"
    return str(uuid.uuid5(_JOB_ID_NAMESPACE, key))


def schedule_source(name: str) -> str:
    """The CloudEvents ``source`` of a schedule's jobs."""
    return f"/conveyor/schedules/{name}"


def default_owner() -> str:
    """This replica's name in claims: host, process and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def schedule_enqueuer(topology: Topology, publisher: Publisher | None = None) -> Enqueuer:
    """The enqueue pipeline for scheduled jobs, built as the producer API builds its own
    (:func:`producers.app.create_app`): claim check and ledger included, no idempotency
    keys (a tick's job id is already stable)."""
    return Enqueuer(
        topology,
        publisher or Publisher(topology),
        offloader=claim_check_for(topology),
        recorder=ledger_for(topology),
        max_payload_bytes=topology.payloads.max_bytes,
    )


@dataclass(frozen=True)
class _Candidate:
    tick: datetime
    due_at: datetime
    fire: bool  # False: settled as skipped (missed beyond the limit, or paused)
    reason: str = ""


@dataclass(frozen=True)
class _Plan:
    #: Ticks after the cursor to fire or to settle as skipped, ascending.
    candidates: list[_Candidate]
    #: Due times of ticks whose jitter puts them after now.
    not_yet: list[datetime]
    #: Missed ticks before the candidates, skipped without a look (counted only).
    skipped_older: int
    #: The last of those: the cursor may move to it whatever happens to the candidates.
    settled_before: datetime | None


class ScheduleError(ConveyorError):
    """A schedule cannot be fired (unknown name, publish refused): one line."""


class ScheduleFirer:
    """Fires the due ticks of ``topology.schedules`` (see the module's docstring).

    ``enqueuer``: the pipeline that publishes (default: :func:`schedule_enqueuer`, built
    here and closed by :meth:`close`; pass one to share a :class:`Publisher`);
    ``store``: schedule state and tick claims (default: the topology's timer table,
    :func:`infra.aws.names.timers_table_name`); ``owner``: this replica's name in
    claims (default: host, pid and a random suffix); ``lease_s``: see
    :data:`CLAIM_LEASE_S`. Raises :class:`infra.errors.ConfigError` if a schedule's
    ``data`` is not a valid payload (run ``check_imports`` first for every problem).
    """

    def __init__(
        self,
        topology: Topology,
        enqueuer: Enqueuer | None = None,
        *,
        store: ScheduleStore | None = None,
        owner: str | None = None,
        lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.topology = topology
        self._owns_enqueuer = enqueuer is None
        self.enqueuer = enqueuer or schedule_enqueuer(topology)
        self.store = store or ScheduleStore(timers_table_name(topology))
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self.schedules: dict[str, Schedule] = dict(topology.schedules)
        self._recurrences: dict[str, Recurrence] = {
            name: s.recurrence() for name, s in self.schedules.items()
        }
        self._data = {name: self._validated(name, s) for name, s in self.schedules.items()}
        #: When each schedule may next have a due tick (absent: look now).
        self._next_due: dict[str, datetime] = {}

    def close(self) -> None:
        """Stop the publishing threads of an enqueuer this firer built."""
        if self._owns_enqueuer:
            self.enqueuer.close()
            self.enqueuer.publisher.close()

    def _validated(self, name: str, schedule: Schedule) -> dict[str, Any]:
        # `conveyor check` reports this too; a scheduler must not start with a bad payload.
        try:
            model = payload_model(self.topology, schedule.job_type)
            return model.model_validate(schedule.data).model_dump(mode="json")
        except ValidationError as exc:
            raise ConfigError(
                f"schedules.{name}.data: not a valid {schedule.job_type} payload:"
                f" {errors_line(exc, whole='data')}"
            ) from None

    # -- the loop's entry point ----------------------------------------------------------

    def fire_due(self, now: datetime) -> int:
        """Fire every due tick of every enabled schedule; return how many this replica
        published. Never raises for AWS failures (they are logged and retried)."""
        now = now.astimezone(UTC)
        fired = 0
        for name, schedule in self.schedules.items():
            if not schedule.enabled:
                continue
            next_due = self._next_due.get(name)
            if next_due is not None and now < next_due:
                continue
            try:
                fired += self._turn(name, schedule, now)
            except ScheduleStoreError as exc:
                metrics.STORE_FAILURES.labels(name).inc()
                log.warning("schedule turn failed", schedule=name, error=str(exc))
                self._next_due[name] = now + timedelta(seconds=RETRY_S)
            except Exception:
                log.exception("schedule turn failed", schedule=name)
                self._next_due[name] = now + timedelta(seconds=RETRY_S)
        return fired

    def next_due(self, now: datetime) -> datetime | None:
        """The earliest moment a tick of an enabled schedule may be due (None: none
        enabled); the loop may sleep until then, but should wake for other work."""
        moments = [
            self._next_due.get(name) or now
            for name, schedule in self.schedules.items()
            if schedule.enabled
        ]
        return min(moments, default=None)

    # -- one schedule ------------------------------------------------------------------------

    def _due_at(self, name: str, schedule: Schedule, tick: datetime) -> datetime:
        offset_s = jitter_offset_s(f"{name}/{tick_id(tick)}", schedule.jitter_s)
        return tick + timedelta(seconds=offset_s)

    def _plan(self, name: str, schedule: Schedule, state: ScheduleState, now: datetime) -> _Plan:
        """What this turn does with the ticks after the cursor (see :class:`_Plan`)."""
        rec = self._recurrences[name]
        grace = timedelta(seconds=schedule.misfire_grace_s)
        # A tick later than this can still be on time (its jitter delays it).
        on_time_from = now - grace - timedelta(seconds=schedule.jitter_s)
        cursor = state.cursor
        floor = on_time_from if cursor is None else max(cursor, on_time_from)
        ticks = rec.ticks_between(floor, now)
        older: list[datetime] = []
        skipped_older = 0
        settled_before: datetime | None = None
        if cursor is not None and cursor < on_time_from:
            # Ticks no scheduler fired while they were on time: missed. The last
            # catch_up_limit of them are candidates; the rest are skipped unseen (counted,
            # to a bound, for the metric), and the cursor may move over them.
            older = rec.last_ticks(cursor, on_time_from, schedule.catch_up_count)
            skipped_older = len(rec.ticks_between(cursor, on_time_from)) - len(older)
            if skipped_older > 0:
                before = older[0] - timedelta(seconds=1) if older else on_time_from
                found = rec.last_ticks(cursor, before, 1)
                settled_before = found[-1] if found else None
            ticks = older + ticks
        not_yet: list[datetime] = []
        missed: list[datetime] = []
        entries: list[tuple[datetime, datetime]] = []
        for tick in ticks:
            due_at = self._due_at(name, schedule, tick)
            if due_at > now:
                not_yet.append(due_at)
                continue
            entries.append((tick, due_at))
            if now - due_at > grace:
                missed.append(tick)
        if cursor is None:
            # A schedule never fired before starts with its latest due tick (if on time),
            # not with every tick of the grace window (60 jobs for an `every: 1s`).
            missed = [t for t in missed if entries and t == entries[-1][0]]
            entries = entries[-1:]
        caught_up = set(missed[-schedule.catch_up_count :]) if schedule.catch_up_count else set()
        dropped = set(missed) - caught_up
        candidates = []
        for tick, due_at in entries:
            if state.paused:
                candidates.append(_Candidate(tick, due_at, fire=False, reason="paused"))
            elif tick in dropped:
                candidates.append(_Candidate(tick, due_at, fire=False, reason="missed"))
            else:
                candidates.append(_Candidate(tick, due_at, fire=True))
        return _Plan(candidates, not_yet, skipped_older, settled_before)

    def _turn(self, name: str, schedule: Schedule, now: datetime) -> int:
        state = self.store.state(name)
        plan = self._plan(name, schedule, state, now)
        if plan.skipped_older:
            reason = "paused" if state.paused else "missed"
            metrics.TICKS_SKIPPED.labels(name, reason).inc(plan.skipped_older)
            log.warning(
                "schedule ticks missed",
                schedule=name,
                skipped=plan.skipped_older,
                since=tick_id(state.cursor) if state.cursor else None,
                misfire=schedule.misfire,
            )
        fired = 0
        last_fire: tuple[datetime, str] | None = None
        settled_until = plan.settled_before
        blocked = False
        for candidate in plan.candidates:
            if not candidate.fire:
                metrics.TICKS_SKIPPED.labels(name, candidate.reason).inc()
                log.info(
                    "schedule tick skipped",
                    schedule=name,
                    tick=tick_id(candidate.tick),
                    reason=candidate.reason,
                )
                done = True
            else:
                done, job_id = self._fire_tick(name, schedule, candidate, now)
                if job_id is not None:
                    fired += 1
                    last_fire = (candidate.tick, job_id)
            if not done:
                blocked = True
            elif not blocked:
                settled_until = candidate.tick
        if last_fire is not None:
            # Once per turn: a catch-up fires several ticks, the newest is the last fire.
            self.store.record_fire(name, job_id=last_fire[1], at=now, tick=last_fire[0])
        if settled_until is not None and (state.cursor is None or settled_until > state.cursor):
            self.store.advance_cursor(name, settled_until)
        upcoming = self._recurrences[name].next_after(now)
        moments = [*plan.not_yet, self._due_at(name, schedule, upcoming)]
        if blocked:
            moments.append(now + timedelta(seconds=RETRY_S))
        self._next_due[name] = min(moments)
        return fired

    def _fire_tick(
        self, name: str, schedule: Schedule, candidate: _Candidate, now: datetime
    ) -> tuple[bool, str | None]:
        """Claim and publish one tick: (settled?, the job id if this replica published it)."""
        tick = candidate.tick
        job_id = schedule_job_id(self.topology, name, tick)
        claim = self.store.claim(
            name, tick, job_id=job_id, owner=self.owner, now=now, lease_s=self.lease_s
        )
        if claim.kind != "won":
            metrics.CLAIMS_LOST.labels(name).inc()
            return claim.kind == "fired", None
        outcome = self._publish(name, schedule, claim.job_id)
        if not outcome.accepted:
            metrics.PUBLISH_FAILURES.labels(name).inc()
            log.warning(
                "schedule tick not published",
                schedule=name,
                tick=tick_id(tick),
                job_id=claim.job_id,
                error=outcome.error,
            )
            self.store.release(name, tick, owner=self.owner)
            return False, None
        self.store.mark_fired(name, tick, owner=self.owner, now=now)
        metrics.TICKS_FIRED.labels(name).inc()
        log.info(
            "schedule tick fired",
            schedule=name,
            tick=tick_id(tick),
            job_id=claim.job_id,
            job_type=schedule.job_type,
            late_s=round((now - candidate.due_at).total_seconds(), 3),
        )
        return True, claim.job_id

    def _publish(self, name: str, schedule: Schedule, job_id: str) -> Outcome:
        data = self._data[name]
        group = message_group_id(self.topology, schedule.job_type, data, None)
        job = Job(
            0,
            schedule.job_type,
            data,
            message_group_id=group,
            job_id=job_id,
            source=schedule_source(name),
        )
        [outcome] = self.enqueuer.run([job], traceparent=None, scope=SCOPE)
        return outcome

    # -- by hand ------------------------------------------------------------------------------

    def trigger(self, name: str, now: datetime | None = None) -> str:
        """Fire ``name`` once now, under a fresh job id (not a tick: no claim, the cursor
        stays); return the job id. Raises :class:`ScheduleError` if it was not published."""
        schedule = self.schedules.get(name)
        if schedule is None:
            raise ScheduleError(unknown_schedule(name, self.schedules))
        at = (now or datetime.now(UTC)).astimezone(UTC)
        outcome = self._publish(name, schedule, str(uuid.uuid4()))
        if not outcome.accepted or outcome.job_id is None:
            raise ScheduleError(f"schedule '{name}' not fired: {outcome.error or 'not accepted'}")
        self.store.record_fire(name, job_id=outcome.job_id, at=at, tick=None)
        log.info("schedule triggered", schedule=name, job_id=outcome.job_id)
        return outcome.job_id


def unknown_schedule(name: str, schedules: Mapping[str, object]) -> str:
    """The one-line error for a schedule name queues.yaml does not declare."""
    known = ", ".join(sorted(schedules)) or "none"
    return f"unknown schedule '{name}' (known: {known})"
