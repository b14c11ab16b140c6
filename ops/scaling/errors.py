"""The one error scaling commands raise."""

from __future__ import annotations

from infra.errors import CommandError


class ScalingError(CommandError):
    """A scaling command cannot go on (see :class:`infra.errors.CommandError`)."""
