"""Idempotency keys: claim, replay, conflict, in-progress, take-over (moto in process)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infra import aws
from infra.settings import ApiSettings
from producers.app import create_app
from producers.enqueue import fingerprint
from producers.idempotency import IdempotencyStore, IdempotencyUnavailableError
from sample_jobs.payloads import ResizeImage
from tests.unit.test_api import RESIZE, create_tables, drain, provision, topology

__all__ = ["topology"]  # fixtures

TABLE = "conveyor-unit-idempotency"


@pytest.fixture
def store(mocked_aws: None, topology: Any) -> IdempotencyStore:
    create_tables(topology)
    return IdempotencyStore(TABLE, retention_s=3600, lease_s=30)


def _item(pk: str) -> dict[str, Any]:
    got = aws.client("dynamodb").get_item(TableName=TABLE, Key={"pk": {"S": pk}})
    return {k: next(iter(v.values())) for k, v in got["Item"].items()}


def _set(pk: str, **values: str) -> None:
    names = {f"#{k}": k for k in values}
    aws.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": {"S": pk}},
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in values),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":{k}": {"N": v} for k, v in values.items()},
    )


def test_a_new_key_then_its_replay_and_a_conflict(store: IdempotencyStore) -> None:
    claim = store.claim("ci", "k", "fp1", "t", "job-1")
    assert (claim.kind, claim.job_id, claim.pk) == ("new", "job-1", "ci#k")
    assert store.claim("ci", "k", "fp1", "t", "job-2").kind == "in_progress"
    store.mark_published([claim])
    replay = store.claim("ci", "k", "fp1", "t", "job-3")
    assert (replay.kind, replay.job_id) == ("replay", "job-1")
    conflict = store.claim("ci", "k", "fp-other", "t", "job-4")
    assert (conflict.kind, conflict.job_id) == ("conflict", "job-1")
    # Keys are scoped by API key: another caller's "k" is another key.
    assert store.claim("other", "k", "fp1", "t", "job-5").kind == "new"


def test_a_released_key_is_taken_over_with_the_same_job_id(store: IdempotencyStore) -> None:
    claim = store.claim("ci", "k", "fp", "t", "job-1")
    store.release([claim])
    assert _item("ci#k")["state"] == "failed"
    again = store.claim("ci", "k", "fp", "t", "job-2")
    assert (again.kind, again.job_id) == ("new", "job-1")
    assert _item("ci#k")["state"] == "pending"


def test_a_crashed_claim_is_taken_over_after_its_lease(store: IdempotencyStore) -> None:
    store.claim("ci", "k", "fp", "t", "job-1")  # never settled: its request crashed
    in_progress = store.claim("ci", "k", "fp", "t", "job-2")
    assert in_progress.kind == "in_progress"
    assert in_progress.retry_after_s is not None
    assert 1 <= in_progress.retry_after_s <= 31  # the 30 s lease, in whole seconds up
    _set("ci#k", lease_until="1")  # the lease ran out
    taken = store.claim("ci", "k", "fp", "t", "job-3")
    assert (taken.kind, taken.job_id) == ("new", "job-1")


def test_an_expired_key_not_yet_removed_by_ttl_is_new(store: IdempotencyStore) -> None:
    store.mark_published([store.claim("ci", "k", "fp", "t", "job-1")])
    _set("ci#k", expires_at="1")  # DynamoDB's TTL removes items lazily (moto: never)
    fresh = store.claim("ci", "k", "fp-new", "t", "job-2")
    assert (fresh.kind, fresh.job_id) == ("new", "job-2")


def test_racing_claims_give_one_winner(store: IdempotencyStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        kinds = list(
            pool.map(lambda i: store.claim("ci", "race", "fp", "t", f"job-{i}").kind, range(8))
        )
    assert sorted(kinds) == ["in_progress"] * 7 + ["new"]


def test_a_missing_table_is_unavailable_and_says_what_to_do(mocked_aws: None) -> None:
    with pytest.raises(IdempotencyUnavailableError, match="conveyor infra apply"):
        IdempotencyStore("nope").claim("ci", "k", "fp", "t", "job-1")


def test_duplicate_keys_in_one_batch_and_an_in_flight_duplicate(
    mocked_aws: None, topology: Any
) -> None:
    urls = provision(topology)
    client = TestClient(create_app(topology, settings=ApiSettings(idempotency_lease_s=30)))
    twice = client.post(
        "/v1/jobs",
        json={
            "jobs": [
                {"type": "image.resize", "data": RESIZE, "idempotency_key": "a"},
                {"type": "image.resize", "data": RESIZE, "idempotency_key": "a"},
            ]
        },
    )
    assert twice.status_code == 207
    first, second = twice.json()["results"]
    assert first["status"] == 202
    assert second["status"] == 409
    assert "used twice in this request" in second["error"]
    # A claim whose request is still publishing (or crashed): a duplicate gets 409 and a wait.
    data = ResizeImage.model_validate(RESIZE).model_dump(mode="json")
    IdempotencyStore(TABLE).claim("-", "b", fingerprint("image.resize", data), "image.resize", "j")
    busy = client.post("/v1/jobs/image.resize", json=RESIZE, headers={"Idempotency-Key": "b"})
    assert busy.status_code == 409
    assert "is being processed" in busy.json()["detail"]
    assert int(busy.headers["retry-after"]) >= 1
    assert len(drain(urls["images"])) == 1
