"""DynamoDB tables in the plan: compare a declared table with what exists, say what to do.

Pure, like :mod:`.diff`, which puts these changes into its apply and destroy
stages. Compared: the key schema (immutable, so only reported), the billing
mode, time to live on the declared attribute, and Conveyor's tags. Encryption is
reported when a KMS key was chosen out of band, and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.provision.actual import ActualTable
from infra.provision.compare import tag_diffs
from infra.provision.desired import DesiredIndex, DesiredTable
from infra.provision.plan import Change

#: TTL states in which the declared attribute counts as on (ENABLING: AWS is at it; it
#: can take up to an hour). moto (5.2.5) switches at once and reports only ENABLED/DISABLED.
TTL_ON = frozenset({"ENABLED", "ENABLING"})


@dataclass(frozen=True)
class CreateTable:
    """CreateTable (AWS owned key), then wait until it is ACTIVE."""

    name: str
    partition_key: str
    partition_key_type: str
    billing_mode: str
    tags: dict[str, str]
    #: A string sort key, and global secondary indexes (the timer table's).
    sort_key: str | None = None
    indexes: tuple[DesiredIndex, ...] = ()


@dataclass(frozen=True)
class SetBillingMode:
    """UpdateTable with a new billing mode, then wait until it is ACTIVE again."""

    name: str
    billing_mode: str


@dataclass(frozen=True)
class EnableTimeToLive:
    name: str
    attribute: str


@dataclass(frozen=True)
class TagTable:
    name: str
    arn: str
    tags: dict[str, str]


@dataclass(frozen=True)
class DeleteTable:
    name: str


TableOperation = CreateTable | SetBillingMode | EnableTimeToLive | TagTable | DeleteTable
TABLE_OPERATIONS = (CreateTable, SetBillingMode, EnableTimeToLive, TagTable, DeleteTable)
#: A change and the operations that make it, in order (none for a note).
TableChange = tuple[Change, tuple[TableOperation, ...]]


def describe_table_operation(op: TableOperation) -> str:
    """What ``op`` does, for an error message: ``creating table conveyor-dev-succeeded``."""
    match op:
        case CreateTable(name=name):
            return f"creating table {name}"
        case SetBillingMode(name=name, billing_mode=mode):
            return f"setting billing mode {mode} on table {name}"
        case EnableTimeToLive(name=name, attribute=attribute):
            return f"enabling time to live on {attribute} of table {name}"
        case TagTable(name=name):
            return f"tagging table {name}"
        case DeleteTable(name=name):
            return f"deleting table {name}"
    raise AssertionError(op)  # pragma: no cover - the match is exhaustive


def _note(name: str, message: str) -> TableChange:
    return Change("note", "table", name, {"message": message}), ()


def _key(schema: tuple[tuple[str, str, str], ...]) -> str:
    return ", ".join(f"{name} ({kind} {type_})" for name, kind, type_ in schema) or "(none)"


def _ttl_changes(dt: DesiredTable, found: ActualTable) -> tuple[list[TableChange], dict[str, Any]]:
    """Notes about TTL that cannot be fixed now, or the detail of enabling it."""
    if found.ttl_status in TTL_ON:
        if found.ttl_attribute == dt.ttl_attribute:
            return [], {}
        message = (
            f"time to live is on attribute {found.ttl_attribute}, not {dt.ttl_attribute}:"
            " DynamoDB has one TTL attribute per table and changing it means disabling TTL"
            " first (then waiting up to an hour); left unchanged — disable it, then run"
            " `conveyor infra apply` again"
        )
        return [_note(dt.name, message)], {}
    if found.ttl_status == "DISABLING":
        message = (
            "time to live is being disabled (DynamoDB takes up to an hour); run"
            " `conveyor infra apply` again once it is disabled"
        )
        return [_note(dt.name, message)], {}
    return [], {"TimeToLive": {"old": None, "new": dt.ttl_attribute}}


def table_changes(dt: DesiredTable, found: ActualTable | None) -> list[TableChange]:
    """What apply does for the declared table ``dt`` given what exists (``None``: nothing)."""
    if found is None:
        create = CreateTable(
            dt.name,
            dt.partition_key,
            dt.partition_key_type,
            dt.billing_mode,
            dt.tags,
            dt.sort_key,
            dt.indexes,
        )
        return [
            (
                Change("create", "table", dt.name),
                (create, EnableTimeToLive(dt.name, dt.ttl_attribute)),
            )
        ]
    if found.status == "DELETING":
        return [
            _note(dt.name, "is being deleted; run `conveyor infra apply` again once it is gone")
        ]
    want: tuple[tuple[str, str, str], ...] = ((dt.partition_key, "HASH", dt.partition_key_type),)
    if dt.sort_key is not None:
        want += ((dt.sort_key, "RANGE", "S"),)
    if found.key_schema != want:
        message = (
            f"has the key {_key(found.key_schema)}, but {_key(want)} is declared: a table's"
            " key cannot change; left unchanged — delete the table (it holds only"
            " Conveyor's short-lived records), then run `conveyor infra apply`"
        )
        return [_note(dt.name, message)]

    changes: list[TableChange] = []
    missing = [i.name for i in dt.indexes if i.name not in found.indexes]
    if missing:
        message = (
            f"has no index {', '.join(missing)}: left unchanged — delete the table (it holds"
            " only Conveyor's short-lived records), then run `conveyor infra apply`"
        )
        changes.append(_note(dt.name, message))
    if found.kms_key is not None:
        message = (
            f"encrypted with KMS key {found.kms_key}; Conveyor creates it with DynamoDB's"
            " default AWS owned key; left alone"
        )
        changes.append(_note(dt.name, message))
    details: dict[str, Any] = {}
    operations: list[TableOperation] = []
    if found.billing_mode != dt.billing_mode:
        details["BillingMode"] = {"old": found.billing_mode, "new": dt.billing_mode}
        operations.append(SetBillingMode(dt.name, dt.billing_mode))
    notes, ttl_details = _ttl_changes(dt, found)
    changes += notes
    if ttl_details:
        details.update(ttl_details)
        operations.append(EnableTimeToLive(dt.name, dt.ttl_attribute))
    tags = tag_diffs(dt.tags, found.tags)
    if tags:
        details.update({f"tag:{k}": {"old": old, "new": new} for k, (old, new) in tags.items()})
        operations.append(TagTable(dt.name, found.arn, {k: new for k, (_, new) in tags.items()}))
    if operations:
        changes.append((Change("update", "table", dt.name, details), tuple(operations)))
    return changes


def table_deletion(dt: DesiredTable, found: ActualTable | None) -> list[TableChange]:
    """What destroy does for the declared table ``dt``: delete it if it exists."""
    if found is None or found.status == "DELETING":
        return []
    return [(Change("delete", "table", dt.name), (DeleteTable(dt.name),))]
