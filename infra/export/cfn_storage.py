"""CloudFormation for Conveyor's storage: DynamoDB tables, the claim-check bucket, their IAM.

Used by :mod:`infra.export.cloudformation`. The resources mirror what
``conveyor infra apply`` creates (:mod:`infra.provision.desired`,
:mod:`infra.provision.buckets`); the IAM statements give each role only what its
code calls:

- the producer API: ``s3:PutObject`` on the claim-check objects of every job type,
  BatchWriteItem/BatchGetItem on the job ledger (record queued, read status), and
  the idempotency-key table's item actions;
- a worker pool: GetItem/PutItem on the guard's table (if a job type of its queues
  sets the guard), UpdateItem on the ledger (if one records status),
  ``s3:GetObject`` on the objects of the job types its queues receive, and
  ``s3:ListBucket`` on the bucket, so that a missing object is a 404 to it.

Object keys are ``<job type>/<job id>.json``: the only resource patterns in the
template are ``<bucket ARN>/<job type>/*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from infra.aws.names import LEDGER_TABLE, PAYLOAD_BUCKET, SUCCEEDED_TABLE
from infra.provision.buckets import (
    ABORT_MULTIPART_DAYS,
    LIFECYCLE_RULE_ID,
    PUBLIC_ACCESS_BLOCK,
    SSE_ALGORITHM,
)
from infra.provision.desired import DesiredBucket, DesiredTable
from infra.topology import Topology

#: The idempotency guard: has this job succeeded on this queue; it has now.
WORKER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem")
#: The producer records jobs as queued (BatchWriteItem) and reads their status
#: (BatchGetItem); workers update their own run records (UpdateItem).
#: Status reads (BatchGetItem), queued records (BatchWriteItem); a cancellation marks
#: each queue (UpdateItem) and records a delayed job cancelled before publishing (PutItem).
API_LEDGER_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
WORKER_LEDGER_ACTIONS = ("dynamodb:UpdateItem",)
#: The producer API's idempotency keys (contract C5): claimed, read, settled, released.
API_IDEMPOTENCY_ACTIONS = (
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
#: The key in desired.py of the producer API's idempotency table.
IDEMPOTENCY_TABLE_KEY = "idempotency"


def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def _allow(sid: str, actions: Iterable[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources}


def table_resource(table: DesiredTable, name: Any, tags: list[dict[str, Any]]) -> dict[str, Any]:
    """``AWS::DynamoDB::Table``: a string partition key (the timer table: a sort key and
    an index too), on demand, time to live."""
    attributes = {table.partition_key: table.partition_key_type}
    schema = [{"AttributeName": table.partition_key, "KeyType": "HASH"}]
    if table.sort_key is not None:
        attributes[table.sort_key] = "S"
        schema.append({"AttributeName": table.sort_key, "KeyType": "RANGE"})
    indexes = []
    for index in table.indexes:
        attributes[index.partition_key] = "S"
        attributes[index.sort_key] = "S"
        indexes.append(
            {
                "IndexName": index.name,
                "KeySchema": [
                    {"AttributeName": index.partition_key, "KeyType": "HASH"},
                    {"AttributeName": index.sort_key, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        )
    properties: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": [
            {"AttributeName": a, "AttributeType": t} for a, t in attributes.items()
        ],
        "KeySchema": schema,
        "BillingMode": table.billing_mode,
        "TimeToLiveSpecification": {"AttributeName": table.ttl_attribute, "Enabled": True},
        "Tags": tags,
    }
    if indexes:
        properties["GlobalSecondaryIndexes"] = indexes
    return {"Type": "AWS::DynamoDB::Table", "Properties": properties}


def bucket_resource(
    bucket: DesiredBucket, project: str, tags: list[dict[str, Any]]
) -> dict[str, Any]:
    """``AWS::S3::Bucket``: named per account and region, SSE-S3, private, objects expiring."""
    # S3 names allow no "_", which EnvironmentName may hold: split and join with "-" (the
    # project's are replaced here), as infra apply names the bucket.
    environment = {"Fn::Join": ["-", {"Fn::Split": ["_", {"Ref": "EnvironmentName"}]}]}
    name = {
        "Fn::Sub": [
            f"{project.replace('_', '-')}-${{Env}}-{PAYLOAD_BUCKET}"
            "-${AWS::AccountId}-${AWS::Region}",
            {"Env": environment},
        ]
    }
    return {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "BucketName": name,
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}
                ]
            },
            "PublicAccessBlockConfiguration": dict(PUBLIC_ACCESS_BLOCK),
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": LIFECYCLE_RULE_ID,
                        "Status": "Enabled",
                        "ExpirationInDays": bucket.expiry_days,
                        "AbortIncompleteMultipartUpload": {
                            "DaysAfterInitiation": ABORT_MULTIPART_DAYS
                        },
                    }
                ]
            },
            "Tags": tags,
        },
    }


def objects_of(bucket_id: str, job_types: Iterable[str]) -> list[dict[str, Any]]:
    """The claim-check objects of ``job_types`` in bucket ``bucket_id`` (a logical id)."""
    return [{"Fn::Sub": f"${{{bucket_id}.Arn}}/{jt}/*"} for jt in sorted(job_types)]


def api_storage_statements(
    topology: Topology, table_ids: dict[str, str], bucket_id: str | None
) -> list[dict[str, Any]]:
    """What the producer API may do with the tables and the bucket."""
    statements = []
    if bucket_id is not None:
        objects = objects_of(bucket_id, topology.job_types)
        statements.append(_allow("ClaimCheckPayloads", ["s3:PutObject"], objects))
    if LEDGER_TABLE in table_ids:
        ledger = [_arn(table_ids[LEDGER_TABLE])]
        statements.append(_allow("JobLedger", API_LEDGER_ACTIONS, ledger))
    if IDEMPOTENCY_TABLE_KEY in table_ids:
        keys = [_arn(table_ids[IDEMPOTENCY_TABLE_KEY])]
        statements.append(_allow("IdempotencyKeys", API_IDEMPOTENCY_ACTIONS, keys))
    return statements


def worker_storage_statements(
    topology: Topology, queues: list[str], table_ids: dict[str, str], bucket_id: str | None
) -> list[dict[str, Any]]:
    """What a worker pool consuming ``queues`` may do with the tables and the bucket."""
    received = {jt for q in queues for jt in topology.job_types_of_queue(q)} & set(
        topology.job_types
    )
    statements = []
    guarded = {jt for jt in received if topology.job_types[jt].idempotency_guard}
    if SUCCEEDED_TABLE in table_ids and guarded:
        guard = [_arn(table_ids[SUCCEEDED_TABLE])]
        statements.append(_allow("IdempotencyGuard", WORKER_TABLE_ACTIONS, guard))
    if LEDGER_TABLE in table_ids and received & set(topology.ledger_job_types()):
        ledger = [_arn(table_ids[LEDGER_TABLE])]
        statements.append(_allow("JobLedger", WORKER_LEDGER_ACTIONS, ledger))
    if bucket_id is not None and received:
        objects = objects_of(bucket_id, received)
        statements.append(_allow("ClaimCheckPayloads", ["s3:GetObject"], objects))
        # Without ListBucket, S3 answers a missing key with 403 instead of 404, and the
        # worker could not tell "expired" (dead-letter) from "not allowed" (retry).
        statements.append(
            _allow("ClaimCheckMissingIsVisible", ["s3:ListBucket"], [_arn(bucket_id)])
        )
    return statements
