"""The embedded emulator: moto on a loopback port, with named fixes to its SQS backend.

Importing this package patches nothing and does not import moto; the fixes are
applied by :class:`Emulator` (and so by :func:`serve` and :class:`EmulatorProcess`'s
child) in the emulator's own process.
"""

from infra.emulator.fixes import FIXES, apply_fixes, selected_fixes_from_env
from infra.emulator.process import EmulatorProcess, wait_until_ready
from infra.emulator.server import Emulator, serve

__all__ = [
    "FIXES",
    "Emulator",
    "EmulatorProcess",
    "apply_fixes",
    "selected_fixes_from_env",
    "serve",
    "wait_until_ready",
]
