"""queues.yaml: the sample loads; each static check fails a broken config with its message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.topology import TopologyError, check_imports, load_topology, parse_topology
from tests import REPO

BASE = """
project: demo
topics:
  media: {}
  orders: {}
queues:
  images:
    subscriptions: [{topic: media}]
  billing:
    subscriptions: [{topic: orders, job_types: [order.placed]}]
job_types:
  image.resize: {topic: media, payload: "sample_jobs.payloads:ResizeImage", handler: "m:f"}
  order.placed: {topic: orders, payload: "sample_jobs.payloads:OrderPlaced", handler: "m:g"}
pools:
  main: {queues: [images, billing]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source="queues.yaml")
    return str(caught.value).splitlines()


def patched(**changes: object) -> str:
    """BASE with top-level keys replaced (deep values given whole)."""
    doc = yaml.safe_load(BASE)
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return yaml.safe_dump(doc)


def test_sample_queues_yaml_is_valid_and_routes_every_job_type() -> None:
    topology = load_topology(REPO / "queues.yaml", environment="dev")
    check_imports(topology)  # every payload model and handler imports
    assert len(topology.topics) >= 2
    assert len(topology.queues) >= 3
    assert len(topology.job_types) >= 5
    for job_type in topology.job_types:
        queues = topology.queues_receiving(job_type)
        assert queues, job_type
        for queue in queues:
            assert topology.handler_for(queue, job_type), (queue, job_type)
    # Every queue is consumed by a pool.
    assert all(topology.pool_of_queue(q) for q in topology.queues)
    # Fan-out with per-queue handlers.
    assert topology.queues_receiving("order.placed") == ["billing", "notifications"]
    assert topology.handler_for("notifications", "order.placed") == (
        "sample_jobs.handlers:send_receipt"
    )


def test_names_retries_and_receive_counts_are_derived() -> None:
    t = parse_topology(BASE)
    assert t.queue_name("images") == "demo-dev-images"
    assert t.dlq_name("images") == "demo-dev-images-dlq"
    assert t.retry_for("images", "image.resize").max_attempts == 5
    assert t.max_receive_count("images") == 8  # the budget + slack


def test_environment_override_renames_resources() -> None:
    assert parse_topology(BASE, environment="ci7").queue_name("billing") == "demo-ci7-billing"


def test_per_job_type_retry_override_merges_field_by_field() -> None:
    text = patched(
        queues__images__retry={
            "max_attempts": 4,
            "backoff": {"base_s": "2s"},
            "job_types": {"image.resize": {"backoff": {"max_s": "1m", "jitter": "none"}}},
        }
    )
    policy = parse_topology(text).retry_for("images", "image.resize")
    assert policy.max_attempts == 4
    assert (policy.backoff.base_s, policy.backoff.max_s, policy.backoff.jitter) == (2, 60, "none")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"job_types__image.resize__topic": "mediaa"},
            "queues.yaml: job_types.image.resize.topic: unknown topic 'mediaa'"
            " (known: media, orders)",
        ),
        (
            {"queues__images__subscriptions": [{"topic": "nope"}]},
            "queues.yaml: queues.images.subscriptions[0].topic: unknown topic 'nope'"
            " (known: media, orders)",
        ),
        (
            {"pools__main__queues": ["images", "billing", "ghost"]},
            "queues.yaml: pools.main.queues[2]: unknown queue 'ghost' (known: billing, images)",
        ),
        (
            {"queues__billing__subscriptions": [{"topic": "orders", "job_types": []}]},
            "queues.yaml: job_types.order.placed: no queue receives job type 'order.placed'"
            " (subscribe a queue to topic 'orders' for it)",
        ),
        (
            {"queues__billing__subscriptions": [{"topic": "orders", "job_types": []}]},
            "queues.yaml: queues.billing.subscriptions[0].job_types: lists no job types (omit"
            " job_types to receive every job type of the topic)",
        ),
        (
            {"job_types__order.placed__handler": None},
            "queues.yaml: queues.billing: queue 'billing' can receive job type 'order.placed'"
            " but no handler is declared (set job_types.order.placed.handler or"
            " queues.billing.handlers.order.placed)",
        ),
        (
            {
                "queues__billing__retry": {"max_attempts": 6},
                "queues__billing__dead_letter": {"max_receive_count": 6},
            },
            "queues.yaml: queues.billing.retry.max_attempts: max_attempts (6) must be below"
            " queues.billing.dead_letter.max_receive_count (6): SQS would dead-letter the job"
            " before its last attempt",
        ),
        (
            {
                "queues__billing__dead_letter": {"max_receive_count": 4},
                "queues__billing__retry": {
                    "max_attempts": 2,
                    "job_types": {"order.placed": {"max_attempts": 9}},
                },
            },
            "queues.yaml: queues.billing.retry.job_types.order.placed.max_attempts: max_attempts"
            " (9) must be below queues.billing.dead_letter.max_receive_count (4): SQS would"
            " dead-letter the job before its last attempt",
        ),
        (
            {"topics__orders": {"fifo": True}},
            "queues.yaml: queues.billing.subscriptions[0].topic: FIFO topic 'orders' cannot"
            " deliver to standard queue 'billing' (set fifo: true on the queue)",
        ),
        (
            {"queues__images__fifo": True},
            "queues.yaml: queues.images.subscriptions[0].topic: standard topic 'media' cannot"
            " deliver to FIFO queue 'images'",
        ),
        (
            {"queues__images__visibility_timeout_s": "13h"},
            "queues.yaml: queues.images.visibility_timeout_s: invalid duration '13h': must be"
            " between 0s and 12h",
        ),
        (
            {"queues__images__retention_s": "soon"},
            "queues.yaml: queues.images.retention_s: invalid duration 'soon': expected seconds"
            " or a number with a unit (ms, s, m, h, d), e.g. '30s', '5m', '14d'",
        ),
        (
            {"queues__images__retry": {"backoff": {"base_s": 10, "max_s": 5}}},
            "queues.yaml: queues.images.retry.backoff: max_s (5) must not be below base_s (10)",
        ),
        (
            {"queues__images__visibilty_timeout_s": 60},
            "queues.yaml: queues.images.visibilty_timeout_s: unknown key 'visibilty_timeout_s'"
            " (allowed: dead_letter, delay_s, description, fifo, handlers, retention_s, retry,"
            " subscriptions, visibility_timeout_s)",
        ),
        (
            {
                "queues__billing__subscriptions": [
                    {"topic": "orders", "job_types": ["image.resize"]}
                ]
            },
            "queues.yaml: queues.billing.subscriptions[0].job_types[0]: job type 'image.resize'"
            " is published to topic 'media', not 'orders'",
        ),
        (
            {"pools__other": {"queues": ["images"]}},
            "queues.yaml: pools.other.queues[0]: queue 'images' is already consumed by pool 'main'",
        ),
        (
            {"queues__images__handlers": {"order.placed": "m:h"}},
            "queues.yaml: queues.images.handlers.order.placed: queue 'images' does not receive"
            " job type 'order.placed'",
        ),
    ],
)
def test_each_static_check_names_the_key_and_the_problem(
    changes: dict[str, object], expected: str
) -> None:
    assert expected in problems_of(patched(**changes))


def test_all_problems_are_reported_at_once() -> None:
    text = patched(
        **{"job_types__image.resize__topic": "x", "pools__main__queues": ["images", "zzz"]}
    )
    assert len(problems_of(text)) >= 2


def test_yaml_errors_name_line_and_column() -> None:
    assert problems_of("topics:\n  a: {}\n  a: {}\n") == [
        "queues.yaml: line 3, column 3: YAML syntax error: duplicate key 'a'"
    ]
    assert problems_of("topics: [unclosed\n")[0].startswith("queues.yaml: line 2, column 1: YAML")
    assert problems_of("- a list\n") == [
        "queues.yaml: the file must be a mapping of keys (topics, queues, job_types, …)"
    ]


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"nowhere\.yaml: file not found"):
        load_topology(tmp_path / "nowhere.yaml")


def test_unimportable_handler_and_non_model_payload_are_reported() -> None:
    text = patched(
        **{
            "job_types__image.resize__handler": "sample_jobs.handlers:no_such_function",
            "job_types__order.placed__payload": "sample_jobs.handlers:charge_order",
        }
    )
    with pytest.raises(TopologyError) as caught:
        check_imports(parse_topology(text))
    message = str(caught.value)
    assert (
        "job_types.image.resize.handler: cannot import 'sample_jobs.handlers:no_such_function'"
        in message
    )
    assert (
        "job_types.order.placed.payload: 'sample_jobs.handlers:charge_order' is not a pydantic"
        " model class" in message
    )
