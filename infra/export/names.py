"""Helpers shared by the exporters: CloudFormation logical ids, pool scaling targets."""

from __future__ import annotations

import hashlib
import re

from infra.topology.model import Autoscale, Pool

#: Backlog per worker node the autoscalers aim at when a pool declares no ``autoscale``.
DEFAULT_BACKLOG_TARGET = Autoscale().target_backlog_per_worker


def backlog_target(pool: Pool) -> int:
    """Messages per worker node ``pool``'s autoscaler aims at (its autoscale target)."""
    return pool.autoscaling.target_backlog_per_worker


def camel(name: str) -> str:
    """``billing-eu_west`` → ``BillingEuWest`` (CloudFormation logical ids are alphanumeric)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name))


class LogicalIds:
    """Unique alphanumeric logical ids; names that camel-case alike get a hash suffix."""

    def __init__(self) -> None:
        self._taken: dict[str, str] = {}

    def __call__(self, prefix: str, *names: str) -> str:
        key = "/".join((prefix, *names))
        if key in self._taken:
            return self._taken[key]
        logical = prefix + "".join(camel(n) for n in names)
        if logical in self._taken.values():
            logical += hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:8]
        self._taken[key] = logical
        return logical
