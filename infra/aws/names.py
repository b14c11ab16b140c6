"""What Conveyor calls its AWS resources, and their ARNs: pure functions, no AWS calls.

Provisioning, the exports, the producer API and the workers all name tables,
buckets, topics and queues through here, so a name is decided once.
"""

from __future__ import annotations

from infra.topology import Topology

#: The idempotency guard's DynamoDB table is ``<project>-<environment>-succeeded``.
SUCCEEDED_TABLE = "succeeded"
#: Its partition key, a string ``<queue>#<job id>`` (the queue's queues.yaml name).
TABLE_PARTITION_KEY = "pk"
#: Epoch seconds after which DynamoDB's time to live deletes a record.
TABLE_TTL_ATTRIBUTE = "expires_at"
#: On demand: no capacity to size or to scale, and nothing to pay while idle.
TABLE_BILLING_MODE = "PAY_PER_REQUEST"


#: The job ledger's DynamoDB table is ``<project>-<environment>-jobs``.
LEDGER_TABLE = "jobs"
#: The producer API's idempotency keys: ``<project>-<environment>-idempotency`` (always).
IDEMPOTENCY_TABLE = "idempotency"
#: The scheduler's timer table is ``<project>-<environment>-timers``: delayed jobs,
#: cron schedule state and tick claims (partition key ``pk``, sort key ``sk``).
TIMERS_TABLE = "timers"
#: The timer table's sort key (a string).
TABLE_SORT_KEY = "sk"
#: The claim-check bucket is ``<project>-<environment>-payloads-<account>-<region>``.
PAYLOAD_BUCKET = "payloads"
#: S3 bucket names: 3 to 63 characters, lower case letters, digits, dots and hyphens.
MAX_BUCKET_NAME_LEN = 63


def partition_of(region: str) -> str:
    """The ARN partition of ``region`` (``aws``, ``aws-cn``, ``aws-us-gov`` …)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith("us-isob-"):
        return "aws-iso-b"
    if region.startswith("us-iso-"):
        return "aws-iso"
    return "aws"


def sqs_arn(region: str, account: str, name: str) -> str:
    """The ARN of SQS queue ``name``."""
    return f"arn:{partition_of(region)}:sqs:{region}:{account}:{name}"


def sns_arn(region: str, account: str, name: str) -> str:
    """The ARN of SNS topic ``name``."""
    return f"arn:{partition_of(region)}:sns:{region}:{account}:{name}"


def dynamodb_table_arn(region: str, account: str, name: str) -> str:
    """The ARN of DynamoDB table ``name``."""
    return f"arn:{partition_of(region)}:dynamodb:{region}:{account}:table/{name}"


def guarded_job_types(topology: Topology) -> list[str]:
    """The job types with ``idempotency_guard: true``, sorted."""
    return sorted(name for name, jt in topology.job_types.items() if jt.idempotency_guard)


def succeeded_table_name(topology: Topology) -> str:
    """The name of the idempotency guard's table (whether or not any job type uses it)."""
    return topology.resource_name(SUCCEEDED_TABLE)


def ledger_table_name(topology: Topology) -> str:
    """The name of the job ledger's table (whether or not any job type uses it)."""
    return topology.resource_name(LEDGER_TABLE)


def timers_table_name(topology: Topology) -> str:
    """The name of the scheduler's timer table (delayed jobs, schedules, tick claims)."""
    return topology.resource_name(TIMERS_TABLE)


def payload_bucket_prefix(topology: Topology) -> str:
    """``<project>-<environment>-payloads-``: the start of the bucket's name in every account."""
    # Bucket names allow no underscore, which project and environment names may have.
    return topology.resource_name(PAYLOAD_BUCKET).replace("_", "-") + "-"


def payload_bucket_name(topology: Topology, account: str, region: str) -> str:
    """The claim-check bucket: S3 names are global, so the account and region are in it.

    Longer than S3's 63 characters only with very long project and environment
    names; provisioning reports that as an error rather than truncating (a
    truncated name could collide with another environment's).
    """
    return f"{payload_bucket_prefix(topology)}{account}-{region}"


def s3_bucket_arn(region: str, name: str) -> str:
    """The ARN of S3 bucket ``name`` (bucket ARNs carry neither region nor account)."""
    return f"arn:{partition_of(region)}:s3:::{name}"
