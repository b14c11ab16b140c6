"""The claim-check S3 bucket in the plan: read it, compare it, say and do what to change.

Managed on the bucket: its existence (in the declared region), the public access
block (all four settings on), default encryption (SSE-S3; a KMS key chosen out of
band is reported and left alone), Conveyor's lifecycle rule (expire objects after
``payloads.expiry_s``; other rules are kept) and Conveyor's tags (other tags are
kept). Destroy empties the bucket first — the plan says so, with the object count.

moto (5.2.5) gaps, handled here or harmless: it reports no default encryption for
a bucket that was never given one, where AWS reports SSE-S3 (both compare as
"needs setting" only when nothing is reported, and setting it is idempotent); it
stores but does not enforce the public access block, and never runs lifecycle
rules (objects do not expire on the emulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from infra.aws.errors import S3_MISSING_CODES, aws_errors, error_code
from infra.errors import ProvisionError
from infra.provision.compare import tag_diffs
from infra.provision.desired import DesiredBucket
from infra.provision.plan import Change

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import WaiterConfigTypeDef

#: The ID of Conveyor's lifecycle rule; rules with other IDs are not Conveyor's.
LIFECYCLE_RULE_ID = "conveyor-expire-payloads"
#: Abandoned multipart uploads are cleaned up after this many days.
ABORT_MULTIPART_DAYS = 1
PUBLIC_ACCESS_BLOCK: dict[str, bool] = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
SSE_ALGORITHM = "AES256"
#: Objects counted for the destroy plan; beyond it the plan says "at least".
COUNT_LIMIT = 1000
#: How long apply waits for a new bucket to be visible (HeadBucket every second).
BUCKET_WAIT: WaiterConfigTypeDef = {"Delay": 1, "MaxAttempts": 60}
#: DeleteObjects takes at most 1,000 keys per call.
DELETE_BATCH = 1000


def lifecycle_rule(expiry_days: int) -> dict[str, Any]:
    """Conveyor's lifecycle rule: every object expires ``expiry_days`` after upload."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "Expiration": {"Days": expiry_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
    }


@dataclass(frozen=True)
class ActualBucket:
    """An existing bucket as S3 reports it."""

    name: str
    #: The bucket's region (GetBucketLocation answers nothing for us-east-1).
    region: str
    #: Every lifecycle rule (Conveyor's and others'); empty when none.
    lifecycle_rules: tuple[dict[str, Any], ...]
    #: The default encryption's algorithm (``AES256``, ``aws:kms`` …); None when none reported.
    sse_algorithm: str | None
    kms_key: str | None
    #: None when the bucket has no public access block at all.
    public_access_block: dict[str, bool] | None
    tags: dict[str, str]
    #: Objects in the bucket, counted up to :data:`COUNT_LIMIT`.
    object_count: int
    more_objects: bool = False

    @property
    def conveyor_rule(self) -> dict[str, Any] | None:
        """Conveyor's lifecycle rule, if there is one."""
        return next((r for r in self.lifecycle_rules if r.get("ID") == LIFECYCLE_RULE_ID), None)


def _absent(call: Any, codes: frozenset[str], **kwargs: Any) -> Any:
    """``call(**kwargs)``, or None when S3 answers that the configuration does not exist."""
    try:
        return call(**kwargs)
    except ClientError as exc:
        if error_code(exc) in codes:
            return None
        raise


def read_bucket(s3: S3Client, name: str) -> ActualBucket | None:
    """The bucket ``name`` and its managed settings, or None if it does not exist."""
    with aws_errors(f"reading bucket {name}"):
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as exc:
            code = error_code(exc)
            if code in S3_MISSING_CODES:
                return None
            if code in ("403", "AccessDenied"):
                # Bucket names are global: 403 is an existing bucket these credentials
                # cannot read, most likely another account's.
                raise ProvisionError(
                    f"bucket {name} exists but these credentials cannot read it (another"
                    " account may own the name): check the account and region, or the"
                    " permissions (s3:ListBucket, s3:GetBucket*)"
                ) from exc
            raise
        location = s3.get_bucket_location(Bucket=name).get("LocationConstraint")
        lifecycle = _absent(
            s3.get_bucket_lifecycle_configuration,
            frozenset({"NoSuchLifecycleConfiguration"}),
            Bucket=name,
        )
        encryption = _absent(
            s3.get_bucket_encryption,
            frozenset({"ServerSideEncryptionConfigurationNotFoundError"}),
            Bucket=name,
        )
        block = _absent(
            s3.get_public_access_block,
            frozenset({"NoSuchPublicAccessBlockConfiguration"}),
            Bucket=name,
        )
        tagging = _absent(s3.get_bucket_tagging, frozenset({"NoSuchTagSet"}), Bucket=name)
        listed = s3.list_objects_v2(Bucket=name, MaxKeys=COUNT_LIMIT)
    default: dict[str, Any] = {}
    if encryption:
        rules = encryption.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        default = dict(rules[0].get("ApplyServerSideEncryptionByDefault", {})) if rules else {}
    return ActualBucket(
        name=name,
        # Old buckets may report "EU" for eu-west-1; Conveyor's are created with the name.
        region=str(location or "us-east-1"),
        lifecycle_rules=tuple(lifecycle.get("Rules", [])) if lifecycle else (),
        sse_algorithm=default.get("SSEAlgorithm"),
        kms_key=default.get("KMSMasterKeyID"),
        public_access_block=(
            {k: bool(v) for k, v in block["PublicAccessBlockConfiguration"].items()}
            if block
            else None
        ),
        tags={t["Key"]: t["Value"] for t in tagging.get("TagSet", [])} if tagging else {},
        object_count=int(listed.get("KeyCount", 0)),
        more_objects=bool(listed.get("IsTruncated")),
    )


# -- operations ------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateBucket:
    name: str
    region: str


@dataclass(frozen=True)
class BlockPublicAccess:
    name: str


@dataclass(frozen=True)
class SetDefaultEncryption:
    name: str


@dataclass(frozen=True)
class SetLifecycle:
    """PutBucketLifecycleConfiguration: replaces every rule, so the others are re-sent."""

    name: str
    rules: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class TagBucket:
    """PutBucketTagging: replaces every tag, so the others are re-sent."""

    name: str
    tags: dict[str, str]


@dataclass(frozen=True)
class EmptyBucket:
    """Delete every object (and every version, should versioning be on)."""

    name: str


@dataclass(frozen=True)
class DeleteBucket:
    name: str


BucketOperation = (
    CreateBucket
    | BlockPublicAccess
    | SetDefaultEncryption
    | SetLifecycle
    | TagBucket
    | EmptyBucket
    | DeleteBucket
)
BUCKET_OPERATIONS = (
    CreateBucket,
    BlockPublicAccess,
    SetDefaultEncryption,
    SetLifecycle,
    TagBucket,
    EmptyBucket,
    DeleteBucket,
)
BucketChange = tuple[Change, tuple[BucketOperation, ...]]


def describe_bucket_operation(op: BucketOperation) -> str:  # noqa: PLR0911 - one per operation
    """What ``op`` does, for an error message."""
    match op:
        case CreateBucket(name=name):
            return f"creating bucket {name}"
        case BlockPublicAccess(name=name):
            return f"blocking public access to bucket {name}"
        case SetDefaultEncryption(name=name):
            return f"setting default encryption on bucket {name}"
        case SetLifecycle(name=name):
            return f"setting the lifecycle rules of bucket {name}"
        case TagBucket(name=name):
            return f"tagging bucket {name}"
        case EmptyBucket(name=name):
            return f"deleting the objects in bucket {name}"
        case DeleteBucket(name=name):
            return f"deleting bucket {name}"
    raise AssertionError(op)  # pragma: no cover - the match is exhaustive


def _with_our_rule(found: ActualBucket | None, expiry_days: int) -> tuple[dict[str, Any], ...]:
    others = [
        r for r in (found.lifecycle_rules if found else ()) if r.get("ID") != LIFECYCLE_RULE_ID
    ]
    return (*others, lifecycle_rule(expiry_days))


def _rule_differs(have: dict[str, Any] | None, want: dict[str, Any]) -> bool:
    if have is None:
        return True
    prefix = have.get("Filter", {}).get("Prefix", have.get("Prefix", ""))
    return (
        have.get("Status") != want["Status"]
        or have.get("Expiration") != want["Expiration"]
        or have.get("AbortIncompleteMultipartUpload") != want["AbortIncompleteMultipartUpload"]
        or prefix != ""
        or set(have.get("Filter", {})) - {"Prefix"} != set()
    )


def _block(found: dict[str, bool] | None) -> str | None:
    """``BlockPublicPolicy off`` for a partial block, None for none (rendered short)."""
    if found is None:
        return None
    off = [k for k in PUBLIC_ACCESS_BLOCK if not found.get(k)]
    return ", ".join(f"{k} off" for k in off) if off else "all on"


def _days(rule: dict[str, Any] | None) -> str | None:
    if rule is None:
        return None
    days = rule.get("Expiration", {}).get("Days")
    state = "" if rule.get("Status") == "Enabled" else f" ({rule.get('Status')})"
    return f"{days}d{state}" if days is not None else f"{rule.get('Expiration')}{state}"


def bucket_changes(db: DesiredBucket, found: ActualBucket | None) -> list[BucketChange]:
    """What apply does for the declared bucket given what exists (``None``: nothing)."""
    if found is None:
        return [
            (
                Change("create", "bucket", db.name, {"expiry": f"{db.expiry_days}d"}),
                (
                    CreateBucket(db.name, db.region),
                    BlockPublicAccess(db.name),
                    SetDefaultEncryption(db.name),
                    SetLifecycle(db.name, _with_our_rule(None, db.expiry_days)),
                    TagBucket(db.name, dict(db.tags)),
                ),
            )
        ]
    changes: list[BucketChange] = []
    if found.region != db.region:
        message = (
            f"is in region {found.region}, not {db.region}: a bucket cannot move; left"
            " unchanged (workers and the API reach it anyway)"
        )
        changes.append((Change("note", "bucket", db.name, {"message": message}), ()))
    details: dict[str, Any] = {}
    operations: list[BucketOperation] = []
    if found.public_access_block != PUBLIC_ACCESS_BLOCK:
        details["PublicAccessBlock"] = {"old": _block(found.public_access_block), "new": "all on"}
        operations.append(BlockPublicAccess(db.name))
    if found.sse_algorithm is None:
        details["DefaultEncryption"] = {"old": None, "new": SSE_ALGORITHM}
        operations.append(SetDefaultEncryption(db.name))
    elif found.sse_algorithm != SSE_ALGORITHM:
        message = (
            f"encrypted by default with {found.sse_algorithm}"
            f"{f' (key {found.kms_key})' if found.kms_key else ''}; Conveyor creates it"
            f" with {SSE_ALGORITHM} (SSE-S3); left alone"
        )
        changes.append((Change("note", "bucket", db.name, {"message": message}), ()))
    want_rule = lifecycle_rule(db.expiry_days)
    if _rule_differs(found.conveyor_rule, want_rule):
        details["lifecycle expiry"] = {"old": _days(found.conveyor_rule), "new": _days(want_rule)}
        operations.append(SetLifecycle(db.name, _with_our_rule(found, db.expiry_days)))
    tags = tag_diffs(db.tags, found.tags)
    if tags:
        details.update({f"tag:{k}": {"old": old, "new": new} for k, (old, new) in tags.items()})
        operations.append(TagBucket(db.name, {**found.tags, **db.tags}))
    if operations:
        changes.append((Change("update", "bucket", db.name, details), tuple(operations)))
    return changes


def bucket_deletion(db: DesiredBucket, found: ActualBucket | None) -> list[BucketChange]:
    """What destroy does: empty the bucket (a destructive step, shown with the count), delete it."""
    if found is None:
        return []
    details: dict[str, Any] = {}
    if found.object_count:
        details["objects"] = f"{found.object_count}{'+' if found.more_objects else ''}"
    return [
        (
            Change("delete", "bucket", db.name, details),
            (EmptyBucket(db.name), DeleteBucket(db.name)),
        )
    ]


# -- running ---------------------------------------------------------------------------


def _empty(s3: S3Client, name: str) -> None:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=name)
    for page in pages:
        keys = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        for start in range(0, len(keys), DELETE_BATCH):
            answer = s3.delete_objects(
                Bucket=name,
                Delete={"Objects": cast("Any", keys[start : start + DELETE_BATCH]), "Quiet": True},
            )
            errors = answer.get("Errors", [])
            if errors:
                first = errors[0]
                raise ProvisionError(
                    f"deleting the objects in bucket {name}: {len(errors)} not deleted"
                    f" ({first.get('Code')}: {first.get('Message')} for {first.get('Key')})"
                )


def run_bucket_operation(s3: S3Client, op: BucketOperation) -> None:
    """Run ``op`` (botocore errors propagate; the caller names the operation)."""
    match op:
        case CreateBucket(name=name, region=region):
            if region == "us-east-1":
                # us-east-1 refuses a LocationConstraint naming itself (AWS and moto).
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": cast("Any", region)},
                )
            # S3 is eventually consistent about a new bucket: the settings that follow
            # could meet NoSuchBucket for a moment (moto answers at once).
            s3.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig=BUCKET_WAIT)
        case BlockPublicAccess(name=name):
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=cast("Any", PUBLIC_ACCESS_BLOCK)
            )
        case SetDefaultEncryption(name=name):
            s3.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration=cast(
                    "Any",
                    {
                        "Rules": [
                            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": SSE_ALGORITHM}}
                        ]
                    },
                ),
            )
        case SetLifecycle(name=name, rules=rules):
            s3.put_bucket_lifecycle_configuration(
                Bucket=name, LifecycleConfiguration={"Rules": cast("Any", list(rules))}
            )
        case TagBucket(name=name, tags=tags):
            s3.put_bucket_tagging(
                Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
        case EmptyBucket(name=name):
            _empty(s3, name)
        case DeleteBucket(name=name):
            try:
                s3.delete_bucket(Bucket=name)
            except ClientError as exc:
                if error_code(exc) not in S3_MISSING_CODES:
                    raise
