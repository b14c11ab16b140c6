"""The claim-check bucket and the ledger table; how the bucket is planned."""

from __future__ import annotations

from dataclasses import replace

import pytest

from infra.errors import ProvisionError
from infra.provision.actual import ActualState
from infra.provision.apply import current_desired_state
from infra.provision.buckets import (
    PUBLIC_ACCESS_BLOCK,
    ActualBucket,
    BlockPublicAccess,
    CreateBucket,
    DeleteBucket,
    EmptyBucket,
    SetDefaultEncryption,
    SetLifecycle,
    TagBucket,
    bucket_changes,
    bucket_deletion,
    lifecycle_rule,
)
from infra.provision.desired import DesiredBucket, desired_state
from infra.provision.diff import DestroyStage, Stage, apply_steps, destroy_steps
from infra.topology import Topology, parse_topology

ACCOUNT = "123456789012"
REGION = "eu-west-1"

YAML = """
version: 1
project: %(project)s
environment: prod
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
payloads: {expiry_s: 20d}
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", ledger: %(ledger)s}
"""


def _topology(*, project: str = "shop", ledger: bool = True) -> Topology:
    text = YAML % {"project": project, "ledger": str(ledger).lower()}
    return parse_topology(text, environment="prod")


@pytest.fixture
def bucket() -> DesiredBucket:
    [found] = desired_state(_topology(), ACCOUNT, REGION).buckets
    return found


def _existing(db: DesiredBucket, **changes: object) -> ActualBucket:
    found = ActualBucket(
        name=db.name,
        region=db.region,
        lifecycle_rules=(lifecycle_rule(db.expiry_days),),
        sse_algorithm="AES256",
        kms_key=None,
        public_access_block=dict(PUBLIC_ACCESS_BLOCK),
        tags={**db.tags, "team": "payments"},
        object_count=0,
    )
    return replace(found, **changes)  # type: ignore[arg-type]


def test_the_bucket_is_named_for_its_account_and_region(bucket: DesiredBucket) -> None:
    # S3 names are global: two accounts or regions with the same topology must not collide.
    assert bucket.name == f"shop-prod-payloads-{ACCOUNT}-{REGION}"
    assert bucket.arn == f"arn:aws:s3:::{bucket.name}"
    assert bucket.expiry_days == 20
    [other] = desired_state(_topology(project="my_shop"), ACCOUNT, REGION).buckets
    assert other.name == f"my-shop-prod-payloads-{ACCOUNT}-{REGION}"  # no "_" in bucket names


def test_the_ledger_table_exists_only_when_a_job_type_records_status() -> None:
    with_ledger = desired_state(_topology(), ACCOUNT, REGION)
    assert [
        (t.name, t.partition_key, t.ttl_attribute, t.billing_mode)
        for t in with_ledger.tables
        if t.key == "jobs"
    ] == [("shop-prod-jobs", "pk", "expires_at", "PAY_PER_REQUEST")]
    without = desired_state(_topology(ledger=False), ACCOUNT, REGION)
    assert "shop-prod-jobs" not in [t.name for t in without.tables]


def test_a_bucket_name_too_long_for_s3_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_AWS_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_REGION", raising=False)
    long = _topology(project="p" * 30)
    with pytest.raises(ProvisionError, match="above S3's 63: shorten project or environment"):
        current_desired_state(long)


def test_a_missing_bucket_is_created_private_encrypted_and_expiring_last() -> None:
    desired = desired_state(_topology(), ACCOUNT, REGION)
    steps = apply_steps(desired, ActualState())
    last = steps[-1]
    assert last.stage == Stage.BUCKET
    assert last.change is not None
    assert last.change.render() == f"+ bucket {desired.buckets[0].name}"
    name = desired.buckets[0].name
    assert last.operations == (
        CreateBucket(name, REGION),
        BlockPublicAccess(name),
        SetDefaultEncryption(name),
        SetLifecycle(name, (lifecycle_rule(20),)),
        TagBucket(name, desired.buckets[0].tags),
    )
    assert lifecycle_rule(20)["Expiration"] == {"Days": 20}
    assert lifecycle_rule(20)["Status"] == "Enabled"


def test_an_up_to_date_bucket_is_an_empty_plan(bucket: DesiredBucket) -> None:
    assert bucket_changes(bucket, _existing(bucket)) == []


def test_drift_is_one_update_that_keeps_other_rules_and_tags(bucket: DesiredBucket) -> None:
    theirs = {"ID": "archive-logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled"}
    found = _existing(
        bucket,
        lifecycle_rules=(theirs, {**lifecycle_rule(90), "Status": "Disabled"}),
        public_access_block={**PUBLIC_ACCESS_BLOCK, "BlockPublicPolicy": False},
        sse_algorithm=None,
        tags={"team": "payments"},
    )
    [(change, operations)] = bucket_changes(bucket, found)
    assert change.action == "update"
    assert set(change.details) == {
        "PublicAccessBlock",
        "DefaultEncryption",
        "lifecycle expiry",
        "tag:conveyor:project",
        "tag:conveyor:environment",
    }
    assert change.details["lifecycle expiry"] == {"old": "90d (Disabled)", "new": "20d"}
    assert operations == (
        BlockPublicAccess(bucket.name),
        SetDefaultEncryption(bucket.name),
        SetLifecycle(bucket.name, (theirs, lifecycle_rule(20))),
        TagBucket(bucket.name, {"team": "payments", **bucket.tags}),
    )


def test_a_missing_rule_or_block_is_drift(bucket: DesiredBucket) -> None:
    [(change, _)] = bucket_changes(bucket, _existing(bucket, lifecycle_rules=()))
    assert change.details == {"lifecycle expiry": {"old": None, "new": "20d"}}
    [(change, ops)] = bucket_changes(bucket, _existing(bucket, public_access_block=None))
    assert ops == (BlockPublicAccess(bucket.name),)


def test_a_kms_key_or_another_region_is_reported_and_left_alone(bucket: DesiredBucket) -> None:
    found = _existing(bucket, sse_algorithm="aws:kms", kms_key="arn:aws:kms:k", region="us-west-2")
    changes = bucket_changes(bucket, found)
    assert [c.action for c, _ in changes] == ["note", "note"]
    assert all(ops == () for _, ops in changes)
    messages = " ".join(c.details["message"] for c, _ in changes)
    assert "us-west-2" in messages
    assert "aws:kms (key arn:aws:kms:k)" in messages


def test_destroy_says_it_empties_the_bucket_first(bucket: DesiredBucket) -> None:
    [(change, operations)] = bucket_deletion(bucket, _existing(bucket, object_count=2))
    assert change.render() == f"- bucket {bucket.name} (holds 2 objects: all are deleted first)"
    assert operations == (EmptyBucket(bucket.name), DeleteBucket(bucket.name))
    [(many, _)] = bucket_deletion(bucket, _existing(bucket, object_count=1000, more_objects=True))
    assert "holds 1000+ objects" in many.render()
    [(empty, _)] = bucket_deletion(bucket, _existing(bucket))
    assert empty.render() == f"- bucket {bucket.name}"
    assert bucket_deletion(bucket, None) == []


def test_the_bucket_is_deleted_after_everything_else() -> None:
    desired = desired_state(_topology(), ACCOUNT, REGION)
    actual = ActualState(buckets={desired.buckets[0].name: _existing(desired.buckets[0])})
    steps = destroy_steps(desired, actual)
    assert [s.stage for s in steps] == [DestroyStage.BUCKET]
