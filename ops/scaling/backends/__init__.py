"""Scaling backends: where desired replicas are stored and who makes them real.

=============  ===========================================  ==================================
backend        desired replicas are                          reconciled by
=============  ===========================================  ==================================
``local``      a JSON file in the state directory            the supervisor (``workers up``)
``ecs``        the ECS service's ``desiredCount``            ECS
``kubernetes`` the worker Deployment's ``spec.replicas``     Kubernetes
=============  ===========================================  ==================================

ECS and Kubernetes are their own store: keeping a second copy would drift from
what the orchestrator actually runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Protocol

from infra.settings import ScalingSettings
from infra.topology import Topology
from ops.scaling.errors import ScalingError
from ops.scaling.model import PoolState

BackendName = Literal["local", "ecs", "kubernetes"]
BACKENDS: tuple[BackendName, ...] = ("local", "ecs", "kubernetes")
BACKEND_ENV = ScalingSettings.env_name("scaling_backend")


class Backend(Protocol):
    """Reads and sets the replicas of a topology's pools."""

    name: str

    def pools(self, pools: list[str] | None = None) -> dict[str, PoolState]:
        """Desired and running replicas (and nodes) of ``pools`` (default: all)."""
        ...

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """Store new desired replicas; the backend converges on them."""
        ...


def backend_for(
    name: str, topology: Topology, *, state_dir: Path | None = None, with_jobs: bool = True
) -> Backend:
    """The backend called ``name`` for ``topology``; ScalingError (usage) if unknown."""
    if name == "local":
        from ops.scaling.backends.local import LocalBackend  # noqa: PLC0415

        return LocalBackend(topology, state_dir=state_dir, with_jobs=with_jobs)
    if name == "ecs":
        from ops.scaling.backends.ecs import EcsBackend  # noqa: PLC0415

        return EcsBackend(topology)
    if name == "kubernetes":
        from ops.scaling.backends.kubernetes import (  # noqa: PLC0415 - optional client
            KubernetesBackend,
        )

        return KubernetesBackend(topology)
    raise ScalingError(
        f"unknown scaling backend '{name}' (known: {', '.join(BACKENDS)})", usage=True
    )
