"""Which dead-letter queue a command means, where its jobs go back to, and how deep it is.

A command names a DLQ by its source queue as declared in queues.yaml (``billing``),
or by the DLQ's own declared (``billing-dlq``) or AWS (``conveyor-dev-billing-dlq``)
name. Only declared queues are accepted: Conveyor never touches a queue the
topology does not own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.aws import lookup
from infra.errors import CommandError
from infra.topology import Topology

if TYPE_CHECKING:
    pass


class DlqError(CommandError):
    """A DLQ command cannot go on (see :class:`infra.errors.CommandError`)."""


@dataclass(frozen=True)
class DeadLetterQueue:
    """A declared queue's DLQ, named the ways a user may name it."""

    queue: str  #: the declared source queue, e.g. ``billing``
    name: str  #: the DLQ's AWS name
    source_name: str  #: the source queue's AWS name
    fifo: bool


@dataclass(frozen=True)
class TargetQueue:
    """A declared queue that redriven jobs are sent to."""

    queue: str  #: declared name
    name: str  #: AWS name
    fifo: bool


def _known(topology: Topology) -> str:
    return ", ".join(sorted(topology.queues)) or "none"


def resolve_dlq(topology: Topology, name: str) -> DeadLetterQueue:
    """The DLQ ``name`` designates; :class:`DlqError` (usage) if it is unknown or not a DLQ."""
    for queue in topology.queues:
        if name in (queue, f"{queue}-dlq", topology.dlq_name(queue)):
            return DeadLetterQueue(
                queue=queue,
                name=topology.dlq_name(queue),
                source_name=topology.queue_name(queue),
                fifo=topology.queues[queue].fifo,
            )
    for queue in topology.queues:
        if name == topology.queue_name(queue):
            raise DlqError(
                f"'{name}' is the queue '{queue}', not a dead-letter queue"
                f" (its DLQ is {topology.dlq_name(queue)}: name it '{queue}')",
                usage=True,
            )
    raise DlqError(f"unknown queue '{name}' (known: {_known(topology)})", usage=True)


def resolve_target(topology: Topology, name: str) -> TargetQueue:
    """The queue ``--to name`` designates; a DLQ or an undeclared queue is a usage error."""
    for queue in topology.queues:
        if name in (queue, topology.queue_name(queue)):
            return TargetQueue(queue, topology.queue_name(queue), topology.queues[queue].fifo)
    for queue in topology.queues:
        if name in (f"{queue}-dlq", topology.dlq_name(queue)):
            raise DlqError(
                f"'{name}' is a dead-letter queue: redrive to a queue workers consume"
                f" (known: {_known(topology)})",
                usage=True,
            )
    raise DlqError(f"unknown queue '{name}' (known: {_known(topology)})", usage=True)


def source_target(topology: Topology, dlq: DeadLetterQueue) -> TargetQueue:
    """Where the jobs of ``dlq`` came from, the default redrive target."""
    return TargetQueue(dlq.queue, dlq.source_name, dlq.fifo)


def dlq_url(topology: Topology, dlq: DeadLetterQueue) -> str:
    """The DLQ's URL; MissingResourceError if it does not exist (infra not applied)."""
    return lookup.dlq_url(topology, dlq.queue)


def target_url(topology: Topology, target: TargetQueue) -> str:
    """The target queue's URL; MissingResourceError if it does not exist."""
    return lookup.queue_url(topology, target.queue)
