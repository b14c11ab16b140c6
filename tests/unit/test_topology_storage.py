"""queues.yaml's storage settings: payloads (claim check), the job ledger, and their checks."""

from __future__ import annotations

import pytest

from infra.topology import load_topology, parse_topology
from tests import REPO
from tests.unit.test_topology import patched, problems_of


def test_defaults_and_the_sample() -> None:
    sample = load_topology(REPO / "queues.yaml", environment="dev")
    assert sample.payloads.claim_check_threshold_bytes == 255 * 1024  # just under SNS's 256 KiB
    assert sample.payloads.max_bytes == 10 * 1024 * 1024
    assert sample.payloads.expiry_s == 30 * 86400
    assert sample.ledger.retention_s == 7 * 86400
    # The sample records the status of every job type.
    assert sample.ledger_job_types() == sorted(sample.job_types)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"payloads": {"claim_check_threshold_bytes": 300000}},
            "queues.yaml: payloads.claim_check_threshold_bytes: Input should be less than or"
            " equal to 261120",
        ),
        (
            {"payloads": {"claim_check_threshold_bytes": 2000, "max_bytes": 1000}},
            "queues.yaml: payloads.max_bytes: max_bytes (1000) must not be below"
            " claim_check_threshold_bytes (2000)",
        ),
        (
            {"payloads": {"expiry_s": "36h"}},
            "queues.yaml: payloads.expiry_s: 36h is not a whole number of days (S3 lifecycle"
            " rules expire objects after whole days)",
        ),
        (
            {"payloads": {"expiry_s": "2h"}},
            "queues.yaml: payloads.expiry_s: invalid duration '2h': must be between 1d and 3650d",
        ),
        (
            {"payloads": {"expiry_s": "7d"}},
            "queues.yaml: payloads.expiry_s: 7d is shorter than"
            " queues.billing.dead_letter.retention_s (14d): a large payload could expire while"
            " its job still waits in the queue or its DLQ",
        ),
        (
            {"payloads": {"treshold": 1}},
            "queues.yaml: payloads.treshold: unknown key 'treshold' (allowed:"
            " claim_check_threshold_bytes, expiry_s, max_bytes)",
        ),
        (
            {"job_types__image.resize__ledger": True, "ledger": {"retention_s": "1d"}},
            "queues.yaml: ledger.retention_s: 1d is shorter than queues.images.retention_s (4d):"
            " a job's status could be forgotten before it runs",
        ),
        (
            {"job_types__image.resize__ledger": "sometimes"},
            "queues.yaml: job_types.image.resize.ledger: Input should be a valid boolean,"
            " unable to interpret input",
        ),
    ],
)
def test_each_storage_check_names_the_key_and_the_problem(
    changes: dict[str, object], expected: str
) -> None:
    assert expected in problems_of(patched(**changes))


def test_a_short_ledger_retention_is_fine_when_nothing_is_recorded() -> None:
    # The check is about records: without a job type that records status, no problem.
    topology = parse_topology(patched(ledger={"retention_s": "1d"}))
    assert topology.ledger_job_types() == []
