"""API keys (parsing, lookup) and the per-key token bucket, with a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.auth import (
    KEY_PREFIX,
    ApiKey,
    KeyRing,
    KeysError,
    generate_key,
    hash_key,
    load_keys,
    parse_keys,
    presented_key,
)
from producers.ratelimit import RateLimiter

SHA = "a" * 64


def test_generated_keys_are_long_random_and_recognisable() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith(KEY_PREFIX) and len(k) >= 40 for k in keys)


def test_parse_keys() -> None:
    [full, scoped] = parse_keys(
        f"keys:\n  - {{name: full, sha256: {SHA}}}\n"
        f"  - {{name: mail, sha256: {'b' * 64}, job_types: [email.send], rate_per_s: 5,"
        " burst: 10}\n",
        source="keys.yaml",
        job_types=["email.send", "image.resize"],
    )
    assert full == ApiKey("full", SHA)
    assert full.may_enqueue("anything")
    assert (scoped.job_types, scoped.rate_per_s, scoped.burst) == (frozenset({"email.send"}), 5, 10)
    assert scoped.may_enqueue("email.send")
    assert not scoped.may_enqueue("image.resize")
    assert parse_keys("", source="empty") == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("keys: [", "keys.yaml: not valid YAML"),
        ("keys:\n  - {name: a, sha256: nothex}", "keys.yaml: keys.0.sha256: String should match"),
        (f"keys:\n  - {{name: a, sha256: {SHA}, colour: red}}", "keys.0.colour: Extra inputs"),
        (f"keys:\n  - {{name: a, sha256: {SHA}, rate_per_s: 0}}", "keys.0.rate_per_s"),
        (f"keys:\n  - {{name: a, sha256: {SHA}}}\n  - {{name: a, sha256: {SHA}}}", "used twice"),
        (
            f"keys:\n  - {{name: a, sha256: {SHA}, job_types: [video.encode]}}",
            "keys.0.job_types: unknown job type(s) video.encode",
        ),
    ],
)
def test_a_bad_keys_document_names_the_file_and_the_entry(text: str, message: str) -> None:
    with pytest.raises(KeysError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_keys(text, source="keys.yaml", job_types=["email.send"])


def test_load_keys_from_a_file_and_inline(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(f"keys: [{{name: a, sha256: {SHA}}}]", encoding="utf-8")
    inline = f'{{"keys": [{{"name": "b", "sha256": "{SHA}"}}]}}'
    assert [k.name for k in load_keys(path=path, inline=inline)] == ["a", "b"]
    with pytest.raises(KeysError, match="configured twice"):
        load_keys(path=path, inline=inline.replace('"b"', '"a"'))
    with pytest.raises(KeysError, match="cannot read the API keys file"):
        load_keys(path=tmp_path / "missing.yaml", inline=None)


def test_the_key_ring_finds_only_the_right_key() -> None:
    key = generate_key()
    ring = KeyRing([ApiKey("other", hash_key(generate_key())), ApiKey("mine", hash_key(key))])
    found = ring.find(key)
    assert found is not None
    assert found.name == "mine"
    assert ring.find(key + "x") is None
    assert ring.find("") is None
    assert ring.find(None) is None


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer k1", None, "k1"),
        ("bearer  k1 ", None, "k1"),
        (None, "k2", "k2"),
        ("Bearer k1", "k2", "k2"),
        ("Basic dXNlcjpwdw==", None, None),
        ("Bearer ", None, None),
        (None, None, None),
    ],
)
def test_presented_key(
    authorization: str | None, x_api_key: str | None, expected: str | None
) -> None:
    assert presented_key(authorization, x_api_key) == expected


class _Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_the_bucket_admits_a_burst_then_asks_to_wait() -> None:
    clock = _Clock()
    limiter = RateLimiter(clock)
    take = lambda cost: limiter.take("k", cost, rate_per_s=2, burst=3)  # noqa: E731
    assert [take(1) for _ in range(3)] == [None, None, None]
    assert take(1) == 1  # empty: one token back in 0.5 s, rounded up
    clock.now_s += 0.5
    assert take(1) is None
    assert limiter.take("other", 1, rate_per_s=2, burst=3) is None  # per key


def test_a_large_batch_is_admitted_and_leaves_a_debt() -> None:
    clock = _Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("k", 500, rate_per_s=100, burst=200) is None  # never refused forever
    assert limiter.take("k", 1, rate_per_s=100, burst=200) == 4  # -300 → 1 token: 3.01 s
    clock.now_s += 3.02
    assert limiter.take("k", 1, rate_per_s=100, burst=200) is None
    clock.now_s += 3600
    assert limiter.take("k", 200, rate_per_s=100, burst=200) is None  # refilled to the burst only
    assert limiter.take("k", 1, rate_per_s=100, burst=200) == 1
