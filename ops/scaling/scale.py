"""``conveyor workers scale POOL=N``: parse the requests, check them against the bounds, apply."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infra.topology import Topology
from ops.scaling.backends import Backend
from ops.scaling.errors import ScalingError


@dataclass(frozen=True)
class Change:
    """One pool's desired replicas, before and after."""

    pool: str
    before: int
    after: int


def parse_requests(topology: Topology, requests: Sequence[str]) -> dict[str, int]:
    """``["media=3", "backoffice=1"]`` → ``{"media": 3, "backoffice": 1}``; ScalingError (usage)."""
    if not requests:
        raise ScalingError("name at least one POOL=N (e.g. media=3)", usage=True)
    parsed: dict[str, int] = {}
    known = ", ".join(topology.pools) or "none"
    for request in requests:
        pool, sep, count = request.partition("=")
        if not sep or not pool:
            raise ScalingError(f"'{request}' is not POOL=N (e.g. media=3)", usage=True)
        if pool not in topology.pools:
            raise ScalingError(f"unknown pool '{pool}' (known: {known})", usage=True)
        try:
            replicas = int(count)
        except ValueError:
            raise ScalingError(
                f"'{request}': the replica count must be a whole number", usage=True
            ) from None
        if replicas < 0:
            raise ScalingError(f"'{request}': the replica count must not be negative", usage=True)
        if pool in parsed and parsed[pool] != replicas:
            raise ScalingError(f"pool '{pool}' is named twice with different counts", usage=True)
        parsed[pool] = replicas
    return parsed


def check_bounds(topology: Topology, desired: dict[str, int]) -> None:
    """ScalingError (usage) for the first count outside its pool's ``replicas`` bounds."""
    for pool, replicas in desired.items():
        bounds = topology.pools[pool].replicas
        if not bounds.min <= replicas <= bounds.max:
            raise ScalingError(
                f"{pool}={replicas} is outside pools.{pool}.replicas"
                f" ({bounds.min}..{bounds.max}); pass --force to scale past it",
                usage=True,
            )


def scale(
    topology: Topology, backend: Backend, desired: dict[str, int], *, force: bool = False
) -> list[Change]:
    """Set ``desired`` replicas (within bounds unless ``force``); the changes, in order."""
    if not force:
        check_bounds(topology, desired)
    current = backend.pools(list(desired))
    backend.set_desired(desired)
    return [Change(pool, current[pool].desired, n) for pool, n in desired.items()]
