"""Configuration errors that name the file, the key path and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from infra.errors import ConfigError

if TYPE_CHECKING:
    from infra.topology.model import Topology


@dataclass(frozen=True)
class Problem:
    """One thing wrong with queues.yaml, at a dotted key path such as ``queues.images.retry``."""

    path: str
    message: str

    def render(self, source: str) -> str:
        """``queues.yaml: queues.images.retry.max_attempts: must be below …``."""
        return (
            f"{source}: {self.path}: {self.message}" if self.path else f"{source}: {self.message}"
        )


class TopologyError(ConfigError, ValueError):
    """queues.yaml is unreadable or inconsistent; every problem found is listed."""

    def __init__(
        self, source: str, problems: list[Problem], *, partial: Topology | None = None
    ) -> None:
        self.source = source
        self.problems = problems
        #: The topology as far as it could be read (unknown keys left out), so that a
        #: caller can check more of it (``conveyor check`` imports its handlers); or None.
        self.partial = partial
        super().__init__("\n".join(p.render(source) for p in problems))
