"""Property-based tests of envelope decoding (infra/envelope.py): whatever arrives on a
queue, ``decode`` returns an envelope or raises :class:`EnvelopeError` with a known reason
and a message that names what is wrong; never any other exception.

Example counts are bounded (``make test``); ``CONVEYOR_FAULTS=full`` (``make faults``)
runs about thirteen times as many.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.envelope import Envelope, EnvelopeError, decode, encode, make_envelope
from infra.failure import REASONS
from tests.support.scenarios import size

FUZZ = settings(
    max_examples=size(150, 2000),
    deadline=None,
    database=None,  # nothing written into the checkout; failures print their example
    suppress_health_check=[HealthCheck.too_slow],
)


def _json(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | floats | st.text(max_size=40)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
        max_leaves=12,
    )


#: What Python's json module reads, NaN and Infinity included (a queue can carry them).
json_values = _json(st.floats())
#: What strict JSON can carry, so a round trip must give it back unchanged.
strict_json_values = _json(st.floats(allow_nan=False, allow_infinity=False))
#: The fields a valid envelope has, with the names decode must blame.
FIELDS = [
    "specversion",
    "id",
    "type",
    "source",
    "time",
    "datacontenttype",
    "conveyorversion",
    "traceparent",
    "idempotencykey",
    "dataref",
]


def decoded_or_refused(body: str | bytes) -> Envelope | EnvelopeError:
    try:
        return decode(body)
    except EnvelopeError as exc:
        # The error is the result under test here, not an expected failure: no pytest.raises.
        assert exc.reason in REASONS, exc.reason  # noqa: PT017
        assert str(exc), "an empty error message"  # noqa: PT017
        return exc


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_any_bytes_or_text_decode_or_are_refused_with_a_reason(body: str | bytes) -> None:
    decoded_or_refused(body)


@FUZZ
@given(json_values)
def test_any_json_document_decodes_or_is_refused_with_a_reason(doc: Any) -> None:
    decoded_or_refused(json.dumps(doc))


def _valid_doc() -> dict[str, Any]:
    envelope = make_envelope("fuzz.job", {"n": 1}, idempotency_key="k")
    doc: dict[str, Any] = json.loads(encode(envelope))
    doc["dataref"] = "s3://bucket/key"
    return doc


@FUZZ
@given(st.sampled_from(FIELDS), json_values)
def test_a_broken_field_is_named_in_the_error(name: str, value: Any) -> None:
    doc = _valid_doc()
    doc[name] = value
    result = decoded_or_refused(json.dumps(doc))
    if isinstance(result, Envelope):
        # Accepted: then it must read back as what was sent (nothing silently dropped).
        assert decode(encode(result)) == result
        return
    if result.reason == "invalid_envelope":
        assert name in str(result), str(result)
    elif name == "specversion":
        assert result.reason == "invalid_envelope", result.reason
    else:
        assert (name, result.reason) == ("conveyorversion", "unsupported_version"), str(result)


@FUZZ
# CloudEvents 1.0 requires these; time is optional (tests/fuzz/test_consumer_boundary_fuzz.py).
@given(st.sampled_from(["id", "type", "specversion"]))
def test_a_missing_required_field_is_named(name: str) -> None:
    doc = _valid_doc()
    del doc[name]
    result = decoded_or_refused(json.dumps(doc))
    assert isinstance(result, EnvelopeError)
    assert name in str(result) or result.reason == "not_an_envelope", str(result)


@FUZZ
@given(
    st.from_regex(r"[a-z][a-z0-9_-]{0,10}(\.[a-z][a-z0-9_-]{0,10}){0,3}", fullmatch=True),
    strict_json_values,
    st.none() | st.text(min_size=1, max_size=60),
)
def test_every_envelope_we_write_reads_back_unchanged(
    job_type: str, data: Any, idempotency_key: str | None
) -> None:
    envelope = make_envelope(job_type, data, idempotency_key=idempotency_key)
    assert decode(encode(envelope)) == envelope
    assert decode(encode(envelope).encode("utf-8")) == envelope
