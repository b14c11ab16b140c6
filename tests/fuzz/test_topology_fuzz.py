"""Property-based tests of the queues.yaml loader (infra/topology/load.py): whatever the
file holds, loading gives a topology or a :class:`TopologyError` whose every problem is
rendered as ``<file>: <key path>: <what is wrong>``; never any other exception.

The mutations start from the sample queues.yaml, so they reach deep into the model
(retry overrides, subscriptions, pools) instead of failing at the top level.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.topology import Topology, TopologyError
from infra.topology.load import parse_topology
from tests import REPO
from tests.support.scenarios import size

FUZZ = settings(
    max_examples=size(60, 500),
    deadline=None,
    database=None,  # nothing written into the checkout; failures print their example
    suppress_health_check=[HealthCheck.too_slow],
)
SOURCE = "fuzzed.yaml"
SAMPLE: dict[str, Any] = yaml.safe_load((REPO / "queues.yaml").read_text())
#: libyaml's dumper when there is one: writing the fuzzed file is not what is under test.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_DUMPER)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=8,
)
Path = tuple[str | int, ...]


def _paths(node: Any, prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*prefix, i))
            out.extend(_paths(value, (*prefix, i)))
    return out


PATHS = _paths(SAMPLE)


def _get(doc: Any, path: Path) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: Path, value: Any) -> Any:
    """A deep copy of ``doc`` with ``value`` at ``path``."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {k: (_set(v, rest, value) if k == head else v) for k, v in doc.items()}
    return [(_set(v, rest, value) if i == head else v) for i, v in enumerate(doc)]


def _render(path: Path) -> str:
    """The key path as the loader prints it: ``queues.images.subscriptions[0].topic``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def loaded_or_refused(text: str) -> Topology | TopologyError:
    try:
        return parse_topology(text, source=SOURCE)
    except TopologyError as exc:
        # The error is the result under test here, not an expected failure: no pytest.raises.
        assert exc.problems, "a TopologyError without problems"  # noqa: PT017
        for line in str(exc).splitlines():
            assert line.startswith(f"{SOURCE}: "), line
        for problem in exc.problems:
            assert problem.message.strip(), problem
        return exc


def test_the_sample_loads() -> None:
    assert isinstance(loaded_or_refused(dump(SAMPLE)), Topology)


@FUZZ
@given(st.text(max_size=400))
@example("topics: {}\nqueues: \x08")  # a control character: line and column, one line
def test_any_text_loads_or_is_refused_with_a_readable_error(text: str) -> None:
    loaded_or_refused(text)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(SAMPLE)) | st.text(max_size=10), values))
@example({"\r": None, "": 1})  # keys that must be quoted to stay on one line
def test_any_mapping_loads_or_is_refused_with_a_readable_error(doc: dict[str, Any]) -> None:
    loaded_or_refused(dump(doc))


@FUZZ
@given(st.sampled_from(PATHS), values)
def test_any_value_anywhere_in_the_sample_loads_or_is_refused(path: Path, value: Any) -> None:
    loaded_or_refused(dump(_set(SAMPLE, path, value)))


@FUZZ
@given(
    st.sampled_from(PATHS),
    st.lists(values, min_size=1, max_size=2) | st.dictionaries(st.just("x"), values, min_size=1),
    st.sampled_from(["a", 7, True]),  # not None: null means "inherit" for optional blocks
)
def test_a_value_of_the_wrong_kind_is_blamed_on_its_key(
    path: Path, container: Any, scalar: Any
) -> None:
    original = _get(SAMPLE, path)
    # A mapping or list where a scalar was, a scalar where a mapping or list was.
    value = scalar if isinstance(original, dict | list) else container
    result = loaded_or_refused(dump(_set(SAMPLE, path, value)))
    assert isinstance(result, TopologyError), f"{_render(path)} = {value!r} was accepted"
    where = _render(path)
    named = [p for p in result.problems if where.startswith(p.path) or p.path.startswith(where)]
    assert named, f"{where} = {value!r}: {result}"


@FUZZ
@given(
    st.sampled_from([(), *(p for p in PATHS if isinstance(_get(SAMPLE, p), dict))]),
    st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
)
def test_an_unknown_key_is_named_with_where_it_is(path: Path, key: str) -> None:
    mapping = _get(SAMPLE, path)
    if key in mapping:
        return
    result = loaded_or_refused(dump(_set(SAMPLE, path, {**mapping, key: 1})))
    if isinstance(result, Topology):
        # Only mappings whose keys are names (queues, job types, pools…) take new keys;
        # then the new entry must have been read, not ignored.
        return
    assert any(key in p.path or key in p.message for p in result.problems), str(result)
