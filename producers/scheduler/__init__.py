"""The scheduler role (``conveyor scheduler``): publishes delayed jobs when they are due.

- :mod:`.loop` — :class:`Scheduler`: each turn lists due timers (:mod:`infra.timers`),
  claims them (a conditional write, a lease), publishes them, deletes them; then runs
  the extra periodic work it was given (``tick_sources``: the cron schedules' firer);
- :mod:`.publish` — :class:`DuePublisher`: publishes a stored envelope, or a new job,
  through the producer's publisher, claim check and ledger (the path the API uses);
- :mod:`.metrics`, :mod:`.health` — ``/healthz`` and ``/metrics``.

Any number of replicas may run: each due job is published by the one replica whose
claim succeeded (again, with the same job id, only if that replica died before
deleting it). See docs/scheduling.md.
"""
