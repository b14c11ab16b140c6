"""Scaling worker pools: desired replicas per pool, backends that make them real, an autoscaler.

- :mod:`~ops.scaling.store` keeps the local desired state (a JSON file per
  project and environment) and the supervisor's status file;
- :mod:`~ops.scaling.supervisor` runs worker node processes on this machine
  to match it (``conveyor workers up``, ``conveyor up``);
- :mod:`~ops.scaling.backends` set and read replicas: ``local``, ``ecs``
  (service desiredCount), ``kubernetes`` (Deployment replicas);
- :mod:`~ops.scaling.scale` applies ``POOL=N`` requests within bounds;
- :mod:`~ops.scaling.autoscaler` follows the backlog of each pool's queues;
- :mod:`~ops.scaling.status` is what ``conveyor status`` shows.
"""
