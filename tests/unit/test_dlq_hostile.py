"""Hostile and foreign messages in a DLQ: decoded without raising, shown escaped, resent intact.

A DLQ holds whatever was published: a body nested deeper than ``json.loads`` can
recurse, text that is not valid Unicode, a failure attribute that is not a record,
terminal escape sequences in any field. None of it may crash ``conveyor dlq`` or
reach the terminal unescaped.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.envelope import encode, make_envelope
from infra.failure import FAILURE_ATTRIBUTE, Failure
from ops.dlq import DeadJob, TargetQueue, render, stamp_redrive
from ops.dlq.export import export_line
from ops.dlq.redrive import send_entry
from ops.scaling.model import NodeInfo, PoolState
from ops.scaling.render import pools_table
from ops.text import printable, printable_json

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
DEEP = "[" * 1200 + "]" * 1200
DEEP_OBJECT = '{"a":' * 1200 + "1" + "}" * 1200
ESC = "\x1b]0;pwned\x07\x1b[2J"  # retitle the window, clear the screen
CSI = "\x9b31m"  # the one-byte C1 form


def _message(body: Any, attribute: str | None = None, **extra: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "MessageId": "m-hostile",
        "ReceiptHandle": "r",
        "Body": body,
        "Attributes": {"SentTimestamp": "1700000000000", "ApproximateReceiveCount": "1"},
        "MessageAttributes": {},
    }
    if attribute is not None:
        message["MessageAttributes"][FAILURE_ATTRIBUTE] = {
            "DataType": "String",
            "StringValue": attribute,
        }
    message.update(extra)
    return message


def _failure(**changes: Any) -> Failure:
    values: dict[str, Any] = {
        "reason": "permanent_error",
        "error_type": "PermanentError",
        "error_message": "no",
        "attempts": 1,
        "max_attempts": 3,
        "queue": "work",
        "worker": "w1",
        "first_attempt_at": None,
        "last_failure_at": NOW.isoformat(),
    }
    values.update(changes)
    return Failure(**values)


def _everything_renders(job: DeadJob) -> str:
    """Every view of ``job``; each must work and the result must encode for a terminal."""
    out = "\n".join(
        [
            *render.job_block(job, traceback=True, full=True),
            *render.job_block(job),
            render.job_line(job),
            render.count_by_type([job]),
            printable_json(json.dumps(job.to_json(traceback=True, full=True), ensure_ascii=False)),
            export_line(job),
        ]
    )
    out.encode("utf-8")  # no lone surrogate reaches the terminal
    return out


# -- bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_a_body_nested_too_deeply_is_undecodable_not_a_crash(body: str) -> None:
    with pytest.raises(RecursionError):
        json.loads(body)  # what the job must survive
    job = DeadJob.from_message(_message(body))
    assert job.undecodable == "JSON nested too deeply to decode"
    assert (job.envelope, job.envelope_error, job.job_id, job.job_type) == (
        None,
        "invalid_json",
        None,
        None,
    )
    assert job.size_bytes == len(body)
    line = render.job_line(job)
    assert line.startswith("m-hostile  ?  ")
    assert f"undecodable: JSON nested too deeply to decode ({len(body)} bytes)" in line
    block = render.job_block(job)
    assert "  message   m-hostile" in block
    assert any("undecodable:" in text for text in block)
    _everything_renders(job)


def test_invalid_utf8_bytes_are_undecodable_and_kept_byte_for_byte() -> None:
    raw = b'{"id": "x\xff\xfe"}'
    job = DeadJob.from_message(_message(raw))
    assert job.undecodable == "invalid UTF-8"
    assert job.size_bytes == len(raw)
    assert job.body.encode("utf-8", "surrogateescape") == raw
    exported = json.loads(export_line(job))
    assert exported["undecodable"] == "invalid UTF-8"
    assert exported["body"].encode("utf-8", "surrogateescape") == raw
    assert "\\udcff" in _everything_renders(job)


def test_a_json_escaped_lone_surrogate_is_shown_escaped_and_resent_as_valid_utf8() -> None:
    body = encode(make_envelope("dlq.fragile", {"label": "x"})).replace(
        '"label":"x"', '"label":"\\udcff"'
    )
    job = DeadJob.from_message(_message(body))
    assert job.envelope is not None  # a valid envelope: the value is a lone surrogate
    assert job.undecodable is None
    assert "\\udcff" in _everything_renders(job)
    stamped = stamp_redrive(body, NOW)
    stamped.encode("utf-8")  # sendable: the surrogate stays a JSON escape
    assert json.loads(stamped)["data"] == {"label": "\udcff"}


def test_a_deep_body_is_redriven_byte_for_byte() -> None:
    job = DeadJob.from_message(_message(DEEP_OBJECT))
    assert stamp_redrive(DEEP_OBJECT, NOW) == DEEP_OBJECT
    entry = send_entry(job, TargetQueue("work", "ct-work", fifo=False), NOW, "0")
    assert entry["MessageBody"] == DEEP_OBJECT


@pytest.mark.parametrize("body", ["", "null", "[]", '"text"', "42", "{", "\x00\x01"])
def test_bodies_that_are_not_envelopes_are_shown_raw_and_never_raise(body: str) -> None:
    job = DeadJob.from_message(_message(body))
    assert job.envelope is None
    assert job.envelope_error is not None
    assert job.undecodable is None
    _everything_renders(job)


def test_a_message_missing_everything_still_decodes() -> None:
    job = DeadJob.from_message({"Attributes": "not a dict", "MessageAttributes": ["nor", "this"]})
    assert job.message_id == "(no message id)"
    assert (job.body, job.attributes, job.message_attributes) == ("", {}, {})
    _everything_renders(job)


# -- the failure attribute --------------------------------------------------------------------


@pytest.mark.parametrize(
    "attribute",
    [
        "not json",
        DEEP,
        DEEP_OBJECT,
        "[1, 2, 3]",
        '"a string"',
        "null",
        "{}",  # no field at all
        '{"reason": 7}',
        json.dumps({**json.loads(json.dumps(_failure().__dict__)), "attempts": "three"}),
        json.dumps({**json.loads(json.dumps(_failure().__dict__)), "traceback": ["a"]}),
        json.dumps({**json.loads(json.dumps(_failure().__dict__)), "attempts": True}),
    ],
)
def test_a_malformed_failure_attribute_is_unreadable_not_a_crash(attribute: str) -> None:
    message = _message(encode(make_envelope("dlq.fragile", {"label": "x"})), attribute)
    assert Failure.from_message(message) is None
    job = DeadJob.from_message(message)
    assert job.failure is None
    assert job.failure_unreadable
    assert job.reason == f"unreadable failure record ({FAILURE_ATTRIBUTE})"
    assert job.job_type == "dlq.fragile"  # the body still decodes
    _everything_renders(job)


@pytest.mark.parametrize("attribute", [{"DataType": "String"}, {"StringValue": 5}, "text", None])
def test_a_failure_attribute_of_the_wrong_shape_is_unreadable(attribute: Any) -> None:
    message = _message("{}")
    message["MessageAttributes"][FAILURE_ATTRIBUTE] = attribute
    assert Failure.from_message(message) is None
    assert DeadJob.from_message(message).failure_unreadable


def test_a_well_formed_record_still_reads() -> None:
    failure = _failure(job_id="j-1", traceback="Traceback…")
    message = _message("{}")
    message["MessageAttributes"].update(failure.to_attribute())
    assert Failure.from_message(message) == failure
    assert Failure.from_message(_message("{}")) is None  # none at all: a native redrive
    assert not DeadJob.from_message(_message("{}")).failure_unreadable


# -- escaping ----------------------------------------------------------------------------------


def test_printable_escapes_controls_and_keeps_newlines_only_when_asked() -> None:
    assert printable("a\x1b[2Jb") == "a\\e[2Jb"
    assert printable("\x9b31m") == "\\x9b31m"
    assert printable("a\r\nb\tc\x00\x7f") == "a\\r\\nb\\tc\\x00\\x7f"
    assert printable("a\r\nb", multiline=True) == "a\\r\nb"
    assert printable("abc\u202edcba\u2028") == "abc\\u202edcba\\u2028"
    assert printable("\udcff") == "\\udcff"
    assert printable("héllo ✓ 日本") == "héllo ✓ 日本"  # printable text is left alone


def test_printable_json_stays_valid_json_with_the_same_values() -> None:
    value = {"k\x9b": ["\x1b", "\u202e", "\udcff", "é", "\x7f"]}
    text = printable_json(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert printable(text) == text  # nothing left to escape
    text.encode("utf-8")


def test_every_field_of_a_hostile_job_is_escaped_in_every_view() -> None:
    failure = _failure(
        reason=f"permanent_error{ESC}",
        error_type=f"Error{CSI}",
        error_message=f"boom{ESC}\rhidden",
        worker=f"w{ESC}",
        queue=f"q{CSI}",
        job_id=f"id{ESC}",
        job_type=f"type{ESC}",
        traceback=f"Traceback{ESC}\nline two{CSI}",
    )
    message = _message(f"not json {ESC}{CSI}\u202e")
    message["MessageAttributes"].update(failure.to_attribute())
    message["MessageId"] = f"m{ESC}"
    job = DeadJob.from_message(message)
    shown = _everything_renders(job)
    for char in ("\x1b", "\x9b", "\x07", "\r", "\u202e"):
        assert char not in shown, repr(char)
    assert "\\e]0;pwned" in shown
    assert "line two" in shown


def test_the_workers_table_escapes_and_reads_no_markup() -> None:
    from rich.console import Console  # noqa: PLC0415

    node = NodeInfo(
        id=f"main-1{ESC}[bold red]x[/]",
        state="running",
        host=f"host{CSI}",
        pid=1,
        started_at=0.0,
        jobs_succeeded=None,
        jobs_failed=None,
    )
    state = PoolState("main", desired=1, running=1, nodes=[node], restarts=0, note=None)
    console = Console(width=200, record=True, color_system=None, force_terminal=False)
    console.print(pools_table([state], "local", 10.0))
    text = console.export_text()
    assert "\x1b" not in text
    assert "\x9b" not in text
    assert "[bold red]x[/]" in text  # shown as written, not interpreted
