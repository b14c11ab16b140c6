"""The root of every error Conveyor raises, and the branches shared across packages.

``str(exc)`` of a :class:`ConveyorError` is one line meant for a person. The tree::

    ConveyorError
    ├── ConfigError          queues.yaml, settings, key files (TopologyError, KeysError)
    ├── EnvelopeError        a message that is not a valid job (infra.envelope)
    ├── AwsError             AWS refused or could not be reached
    │   ├── MissingResourceError   a declared queue/topic/table is not there
    │   ├── ProvisionError         plan/apply/destroy failed (carries what was applied)
    │   └── …                      ledger, claim check, idempotency stores, publishing
    ├── CommandError         an operator command cannot go on (DLQ, scaling)
    ├── ApiError             the producer API answered with an error (the Python client)
    └── JobSignal            what a handler raises: RetryLater, PermanentError

Exit codes of the CLI are decided from this tree in one place, :func:`exit_code`: an
error whose ``usage`` is true is a mistake in what was asked (exit 2), any other a
failure of what was attempted (exit 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.provision.plan import Change

#: Exit codes of the ``conveyor`` CLI: a failure of what was attempted, a mistake in
#: what was asked (bad arguments, an unknown name, an invalid file).
EXIT_FAILED = 1
EXIT_USAGE = 2
#: A worker node that stopped to be replaced by a fresh one (its pool's recycling
#: limits): its supervisor restarts it at once, not as a crash (EX_TEMPFAIL).
EXIT_RECYCLED = 75


class ConveyorError(Exception):
    """Every error Conveyor raises derives from this; ``str(exc)`` is one readable line."""

    #: A mistake in what was asked rather than a failure of what was attempted.
    usage: bool = False


class ConfigError(ConveyorError):
    """Configuration that cannot be used (a file, a key, a setting): the user must fix it."""

    usage = True


class AwsError(ConveyorError):
    """AWS refused a request or could not be reached; the message names what was being done."""


class MissingResourceError(AwsError):
    """A declared resource does not exist (``conveyor infra apply`` has not been run)."""


class ProvisionError(AwsError):
    """Provisioning failed; ``applied`` lists the changes made before the failure.

    Apply and destroy stop at the first error; running them again resumes.
    """

    def __init__(self, message: str, applied: list[Change] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.applied: list[Change] = list(applied or [])


class CommandError(ConveyorError):
    """An operator command cannot go on; ``str(exc)`` is one line for the user.

    ``usage`` marks mistakes in what was asked (exit 2) rather than failures of
    what was attempted (exit 1).
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage


class JobSignal(ConveyorError):  # noqa: N818 - a signal to the runner, not an error
    """What a handler raises to steer its job (retry later, fail for good), not a crash."""


def exit_code(exc: BaseException) -> int:
    """The CLI's exit code for ``exc``: 2 for a usage or configuration mistake, else 1."""
    return EXIT_USAGE if isinstance(exc, ConveyorError) and exc.usage else EXIT_FAILED
