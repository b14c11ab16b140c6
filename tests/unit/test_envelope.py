"""The wire envelope: CloudEvents 1.0 JSON, versioned, validated on decode."""

from __future__ import annotations

import json

import pytest

from infra.envelope import ENVELOPE_VERSION, EnvelopeError, decode, encode, make_envelope


def test_round_trip_keeps_every_field() -> None:
    env = make_envelope("image.resize", {"width_px": 3}, idempotency_key="k1")
    doc = json.loads(encode(env))
    assert doc["specversion"] == "1.0"
    assert doc["type"] == "image.resize"
    assert doc["datacontenttype"] == "application/json"
    assert doc["conveyorversion"] == ENVELOPE_VERSION
    assert doc["idempotencykey"] == "k1"
    assert doc["data"] == {"width_px": 3}
    assert "dataref" not in doc  # unset optional fields are omitted
    back = decode(encode(env))
    assert back == env
    assert back.trace_id == env.traceparent.split("-")[1]  # type: ignore[union-attr]


def test_unknown_extensions_are_kept_not_rejected() -> None:
    doc = json.loads(encode(make_envelope("a.b", {})))
    doc["partitionkey"] = "p1"
    assert decode(json.dumps(doc)).model_extra == {"partitionkey": "p1"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1, 2]", "not_an_envelope"),
        ('{"id": "x"}', "not_an_envelope"),
        ('{"specversion": "1.0", "conveyorversion": 2}', "unsupported_version"),
        ('{"specversion": "1.0", "conveyorversion": "1"}', "unsupported_version"),
        (
            '{"specversion": "0.3", "id": "x", "type": "t", "time": "2026-01-01T00:00:00Z"}',
            "invalid_envelope",
        ),
        ('{"specversion": "1.0", "type": "t", "time": "2026-01-01T00:00:00Z"}', "invalid_envelope"),
        ('{"specversion": "1.0", "id": "x", "type": "t", "time": "yesterday"}', "invalid_envelope"),
        (
            '{"specversion": "1.0", "id": "x", "type": "t", "time": "2026-01-01T00:00:00Z",'
            ' "traceparent": "nope"}',
            "invalid_envelope",
        ),
    ],
)
def test_decode_refuses_what_is_not_a_job_with_a_reason(body: str | bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(body)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_naive_times_are_taken_as_utc() -> None:
    env = decode('{"specversion":"1.0","id":"x","type":"t","time":"2026-01-01T00:00:00"}')
    assert env.time.utcoffset() is not None


@pytest.mark.parametrize(
    "extension",
    ['"\\ud800"', '{"\\ud800": null}', '["ok", {"k": "\\udfff"}]'],
)
def test_a_lone_surrogate_anywhere_in_an_extension_is_refused(extension: str) -> None:
    # Found by the consumer-boundary fuzzing: a surrogate inside a nested extension was
    # accepted, and encoding the envelope again (redrive, ledger) then raised.
    doc = json.loads(encode(make_envelope("demo.job", {"n": 1})))
    body = json.dumps(doc)[:-1] + f', "anextension": {extension}}}'
    with pytest.raises(EnvelopeError) as info:
        decode(body)
    assert info.value.reason == "invalid_envelope"
    assert "anextension" in str(info.value)
