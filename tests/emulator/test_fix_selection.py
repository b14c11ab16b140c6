"""Selecting, applying and reverting the emulator's fixes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import moto
import pytest
from moto.sqs import models

import infra.emulator as package
from infra.emulator import fixes
from infra.emulator.fixes import (
    ENV_VAR,
    FIXES,
    applied_fixes,
    apply_fixes,
    parse_fix_selection,
    revert_fixes,
    selected_fixes_from_env,
)
from infra.emulator.patching import Edit, FixDoesNotApplyError, edited

ALL = [
    "serialise_queue_mutations",
    "fast_clock",
    "cheap_attribute_reads",
    "find_deletes_among_in_flight",
    "stop_tracking_messages",
    "forget_old_deleted_receipts",
]
PATCHED = [
    (models.Queue, "__init__"),
    (models.Queue, "add_message"),
    (models.Queue, "delete_message"),
    (models.SQSBackend, "send_message"),
    (models.SQSBackend, "_validate_message"),
    (models.SQSBackend, "receive_message"),
    (models.SQSBackend, "change_message_visibility"),
    (models.SQSBackend, "purge_queue"),
    (models.SQSBackend, "is_message_valid_based_on_retention_period"),
    (models, "unix_time"),
    (models, "unix_time_millis"),
]


def snapshot() -> list[Any]:
    """What moto's patched attributes hold now (``Message.__new__``: own or inherited)."""
    return [vars(owner)[name] for owner, name in PATCHED] + [vars(models.Message).get("__new__")]


def wrapping_chain(function: Any) -> list[str]:
    """The def names down a chain of functools.wraps wrappers (wraps copies the other names)."""
    chain = []
    while function is not None:
        function = getattr(function, "__func__", function)  # a staticmethod
        chain.append(function.__code__.co_name)
        function = getattr(function, "__wrapped__", None)
    return chain


def test_the_fixes_and_their_order(no_fixes: None) -> None:
    assert list(FIXES) == ALL


def test_applying_twice_is_harmless_and_revert_restores_moto(no_fixes: None) -> None:
    shipped = snapshot()
    assert apply_fixes() == ALL
    fixed = snapshot()
    assert all(now is not before for now, before in zip(fixed, shipped, strict=True))
    assert apply_fixes() == ALL
    assert apply_fixes(["fast_clock"]) == ["fast_clock"]
    for fix in FIXES.values():
        fix()
    assert snapshot() == fixed  # the very same objects: nothing wrapped twice
    assert applied_fixes() == ALL
    assert revert_fixes() == ALL
    assert snapshot() == shipped
    assert "__new__" not in vars(models.Message)  # inherited again from BaseModel
    assert applied_fixes() == []


def test_fixes_compose_the_same_whatever_the_order(no_fixes: None) -> None:
    for name in ALL:
        apply_fixes([name])
    forwards = [wrapping_chain(function) for function in snapshot()]
    revert_fixes()
    for name in reversed(ALL):
        apply_fixes([name])
    assert [wrapping_chain(function) for function in snapshot()] == forwards
    # The lock is outermost: a delete is found and done under it.
    chain = wrapping_chain(models.Queue.delete_message)
    assert chain == ["locked", "delete_in_flight_first", "delete_message"]


def test_an_unknown_fix_is_refused_naming_it_and_the_valid_ones(no_fixes: None) -> None:
    with pytest.raises(ValueError, match="unknown emulator fix") as raised:
        apply_fixes(["fast_clock", "warp_drive"])
    assert "warp_drive" in str(raised.value)
    assert all(name in str(raised.value) for name in ALL)
    assert applied_fixes() == []  # nothing applied


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ALL),
        ("all", ALL),
        ("ALL", ALL),
        ("", ALL),
        ("none", []),
        (" None ", []),
        ("fast_clock", ["fast_clock"]),
        (" cheap_attribute_reads , fast_clock,", ["fast_clock", "cheap_attribute_reads"]),
    ],
)
def test_selection_from_the_environment(
    value: str | None, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert selected_fixes_from_env() == expected


@pytest.mark.parametrize("value", ["fast_clock,warp_drive", "al", "all,fast_clock"])
def test_an_unknown_name_in_the_environment_is_an_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(ValueError, match="valid: serialise_queue_mutations, fast_clock"):
        selected_fixes_from_env()


def test_fixes_refuse_another_moto_version(no_fixes: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto, "__version__", "5.2.6")
    with pytest.raises(FixDoesNotApplyError, match=r"moto 5\.2\.5, found 5\.2\.6"):
        apply_fixes(["fast_clock"])
    assert applied_fixes() == []
    assert parse_fix_selection("none") == []  # ...while running without them still works


def sample(queue: Any) -> bool:
    # a stand-in for one of moto's functions
    return bool(queue.attributes.get("X") == "true")


def test_an_edit_keeps_the_rest_of_the_function_and_its_line_numbers() -> None:
    changed = edited(sample, Edit("queue.attributes.get('X') == 'true'", "queue.x"))

    class Queue:
        x = True
        attributes: dict[str, str] = {}  # noqa: RUF012

    assert sample(Queue()) is False
    assert changed(Queue()) is True
    assert changed.__code__.co_filename == sample.__code__.co_filename
    assert changed.__code__.co_firstlineno == sample.__code__.co_firstlineno
    assert changed.__qualname__ == sample.__qualname__


def test_an_edit_that_no_longer_matches_moto_refuses_to_apply() -> None:
    with pytest.raises(FixDoesNotApplyError, match="expected 2 occurrence"):
        edited(sample, Edit("queue.attributes.get('X') == 'true'", "queue.x", count=2))
    with pytest.raises(FixDoesNotApplyError, match="found 0"):
        edited(sample, Edit("queue.attributes['X']", "queue.x"))


def test_importing_the_package_patches_nothing_and_loads_no_moto() -> None:
    code = textwrap.dedent(
        """
        import sys
        import infra.emulator
        assert not [m for m in sys.modules if m.split(".")[0] == "moto"], "moto imported"
        from moto.sqs import models
        assert not hasattr(models.Queue.delete_message, "__wrapped__")
        from moto.core import utils
        assert models.unix_time is utils.unix_time
        from infra.emulator.fixes import applied_fixes
        assert applied_fixes() == []
        assert "__new__" not in vars(models.Message)
        print("clean")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "clean", result.stderr


def test_the_package_exports_the_fixes() -> None:
    assert package.FIXES is fixes.FIXES
    assert package.apply_fixes is fixes.apply_fixes
