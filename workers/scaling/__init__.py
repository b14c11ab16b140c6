"""Scaling worker pools: desired replicas per pool, backends that make them real, an autoscaler.

- :mod:`~workers.scaling.store` keeps the local desired state (a JSON file per
  project and environment) and the supervisor's status file;
- :mod:`~workers.scaling.supervisor` runs worker node processes on this machine
  to match it (``conveyor workers up``, ``conveyor up``);
- :mod:`~workers.scaling.backends` set and read replicas: ``local``, ``ecs``
  (service desiredCount), ``kubernetes`` (Deployment replicas);
- :mod:`~workers.scaling.scale` applies ``POOL=N`` requests within bounds;
- :mod:`~workers.scaling.autoscaler` follows the backlog of each pool's queues;
- :mod:`~workers.scaling.status` is what ``conveyor status`` shows.
"""
