"""How the emulator's fixes patch moto: composable, idempotent and reversible.

A fix contributes :class:`Patch` es to attributes of moto's classes and modules:
either a *replacement* (something standing in for moto's attribute) or a
*wrapper* around whatever stands there. A :class:`PatchSet` rebuilds each
patched attribute from moto's original: its replacement (at most one fix may
replace a given attribute), then the wrappers in registry order. So fixes
compose whatever order they are applied in, applying one twice changes nothing,
and reverting puts back exactly what moto shipped.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any, Final

from infra.errors import ConveyorError

AnyFunction = Callable[..., Any]
Owner = type | ModuleType

_ABSENT: Final = object()  # the owner inherits the attribute rather than defining it


class FixDoesNotApplyError(ConveyorError, RuntimeError):
    """moto's code is not what a fix was written against: re-check the fix, never skip it."""


@dataclass(frozen=True)
class Patch:
    """One change a fix makes to ``owner.name`` (a moto class or module)."""

    owner: Owner
    name: str
    replacement: Any = None
    wrapper: Callable[[AnyFunction], AnyFunction] | None = None


class PatchSet:
    """The patches of the active fixes, composed onto moto; thread-safe.

    ``registry`` is the fixes by name; its order is the order wrappers are applied in.
    """

    def __init__(self, registry: Mapping[str, object]) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._active: dict[str, tuple[Patch, ...]] = {}  # fix name -> its patches
        self._originals: dict[tuple[Owner, str], Any] = {}  # moto's values, while patched

    def original(self, owner: Owner, name: str) -> Any:
        """moto's own value of ``owner.name``, whatever fixes have put there since."""
        return self._originals.get((owner, name), vars(owner).get(name, _ABSENT))

    def activate(self, fix: str, build: Callable[[], list[Patch]]) -> None:
        """Apply ``fix`` (its patches come from ``build``) unless already active."""
        with self._lock:
            if fix in self._active:
                return
            patches = tuple(build())
            self._active[fix] = patches
            for owner, name in dict.fromkeys((patch.owner, patch.name) for patch in patches):
                self._install(owner, name)

    def active(self) -> list[str]:
        """The active fixes, in registry order."""
        with self._lock:
            return [fix for fix in self._registry if fix in self._active]

    def revert_all(self) -> list[str]:
        """Deactivate every fix, restoring moto's attributes; returns the fixes reverted."""
        with self._lock:
            reverted = [fix for fix in self._registry if fix in self._active]
            targets = dict.fromkeys(
                (patch.owner, patch.name) for patches in self._active.values() for patch in patches
            )
            self._active.clear()
            for owner, name in targets:
                self._install(owner, name)
            return reverted

    def _install(self, owner: Owner, name: str) -> None:
        key = (owner, name)
        original = self.original(owner, name)
        patches = [
            patch
            for fix in self._registry
            for patch in self._active.get(fix, ())
            if (patch.owner, patch.name) == key
        ]
        if not patches:
            self._originals.pop(key, None)
            if original is _ABSENT:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
            return
        self._originals[key] = original
        replacements = [patch.replacement for patch in patches if patch.replacement is not None]
        if len(replacements) > 1:
            raise RuntimeError(f"two fixes replace {owner.__name__}.{name}: merge them")
        value = replacements[0] if replacements else original
        if value is _ABSENT:
            raise RuntimeError(f"{owner.__name__}.{name} is inherited: replace it, do not wrap it")
        for patch in patches:
            if patch.wrapper is not None:
                value = patch.wrapper(value)
        setattr(owner, name, value)


@dataclass(frozen=True)
class Edit:
    """Replace an expression in moto's source: ``old`` must occur exactly ``count`` times."""

    old: str
    new: str
    count: int = 1


def edited(function: AnyFunction, *edits: Edit) -> AnyFunction:
    """moto's ``function`` recompiled from its own source with ``edits`` made to it.

    The edits are made on the syntax tree, so an expression matches whatever its
    line breaks and quotes, and every other line keeps moto's file name and line
    number (a traceback points at moto's source). The function gets moto's module
    globals, so it sees what other fixes put there. If moto's source does not
    contain an expression exactly the expected number of times, the fix does not
    apply: :class:`FixDoesNotApplyError`, rather than silently running moto as shipped.
    """
    if not isinstance(function, FunctionType) or function.__code__.co_freevars:
        raise FixDoesNotApplyError(f"{function!r} is not a plain function any more")
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    for edit in edits:
        replacer = _ExpressionReplacer(edit)
        tree = replacer.visit(tree)
        if replacer.matches != edit.count:
            raise FixDoesNotApplyError(
                f"{function.__qualname__}: expected {edit.count} occurrence(s) of "
                f"{edit.old!r} in moto's source, found {replacer.matches}"
            )
    ast.increment_lineno(tree, function.__code__.co_firstlineno - 1)
    code = compile(tree, function.__code__.co_filename, "exec")
    namespace: dict[str, Any] = {}
    # Runs moto's own `def` statement with the edits declared by a fix, nothing else:
    # the source is read from moto's installed module.
    exec(code, function.__globals__, namespace)  # noqa: S102
    result: AnyFunction = namespace[function.__name__]
    result.__qualname__ = function.__qualname__
    return result


class _ExpressionReplacer(ast.NodeTransformer):
    def __init__(self, edit: Edit) -> None:
        self._old = ast.unparse(ast.parse(edit.old, mode="eval"))
        self._new = edit.new
        self.matches = 0

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.expr) and ast.unparse(node) == self._old:
            self.matches += 1
            replacement = ast.parse(self._new, mode="eval").body
            for child in ast.walk(replacement):
                ast.copy_location(child, node)
            return replacement
        return self.generic_visit(node)
