"""The plan: what provisioning would change (or did change), for people and for machines."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "delete", "note"]
Kind = Literal["topic", "queue", "dlq", "subscription", "table", "bucket"]

#: The sign in front of a rendered change, Terraform-style.
SIGNS: dict[str, str] = {"create": "+", "update": "~", "delete": "-", "note": "!"}


#: Longer values are cut in rendered lines (``--json`` has them in full).
MAX_RENDERED_VALUE = 100


def render_value(value: Any) -> str:
    """An attribute value on one line: JSON compact, a missing value as ``(none)``."""
    if value is None:
        return "(none)"
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    else:
        text = str(value)
    if len(text) > MAX_RENDERED_VALUE:
        return text[: MAX_RENDERED_VALUE - 1] + "…"
    return text


@dataclass(frozen=True)
class Change:
    """One thing provisioning creates, updates, deletes, or only reports (a note).

    ``details`` of an update maps an attribute (or ``tag:<key>``) to
    ``{"old": …, "new": …}``; a note carries ``{"message": …}``; a delete may
    carry ``{"messages": n}`` when the queue still holds messages, or
    ``{"objects": "n"}`` (``"1000+"``) when a bucket does, which destroy empties first.
    """

    action: Action
    kind: Kind
    #: The AWS name; a subscription is named ``<topic name> → <endpoint>``.
    name: str
    details: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """``~ queue conveyor-dev-billing: VisibilityTimeout 30 → 120``."""
        head = f"{SIGNS[self.action]} {self.kind} {self.name}"
        if self.action == "note":
            return f"{head}: {self.details.get('message', '')}"
        if self.action == "update":
            parts = [
                f"{key} {render_value(value.get('old'))} → {render_value(value.get('new'))}"
                for key, value in self.details.items()
            ]
            return f"{head}: {'; '.join(parts)}" if parts else head
        if self.action == "delete" and self.details.get("messages"):
            return f"{head} (holds {self.details['messages']} messages)"
        if self.action == "delete" and self.details.get("objects"):
            # Emptying a bucket is destructive in its own right: say so before asking.
            return f"{head} (holds {self.details['objects']} objects: all are deleted first)"
        return head

    def to_json(self) -> dict[str, Any]:
        """The change as plain JSON-able data."""
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "details": self.details,
        }


@dataclass(frozen=True)
class Plan:
    """An ordered list of changes. Notes are information only: they never make a plan non-empty."""

    changes: list[Change] = field(default_factory=list)

    @property
    def actions(self) -> list[Change]:
        """The changes that create, update or delete something."""
        return [c for c in self.changes if c.action != "note"]

    @property
    def notes(self) -> list[Change]:
        """What provisioning reports but does not (or cannot) change."""
        return [c for c in self.changes if c.action == "note"]

    @property
    def is_empty(self) -> bool:
        """True when there is nothing to create, update or delete."""
        return not self.actions

    def counts(self) -> dict[str, int]:
        """How many changes of each action (``create``, ``update``, ``delete``, ``note``)."""
        counted: Counter[str] = Counter(c.action for c in self.changes)
        return {action: counted[action] for action in SIGNS}

    def render(self) -> str:
        """One line per change, in the order they are (or were) applied."""
        return "\n".join(c.render() for c in self.changes)

    def summary(self) -> str:
        """``2 to create, 1 to update, 0 to delete`` or ``no changes: already up to date``."""
        if self.is_empty:
            return "no changes: already up to date"
        n = self.counts()
        return f"{n['create']} to create, {n['update']} to update, {n['delete']} to delete"

    def to_json(self) -> dict[str, Any]:
        """``{"is_empty": …, "counts": {…}, "changes": [...]}``."""
        return {
            "is_empty": self.is_empty,
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
        }
