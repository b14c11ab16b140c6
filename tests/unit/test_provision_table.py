"""The idempotency guard's DynamoDB table: its desired state and how it is planned (pure)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from infra.provision.actual import ActualState, ActualTable
from infra.provision.desired import DesiredState, DesiredTable, desired_state
from infra.provision.diff import DestroyStage, Stage, Step, apply_steps, destroy_steps
from infra.provision.plan import Plan
from infra.provision.tables import (
    CreateTable,
    DeleteTable,
    EnableTimeToLive,
    SetBillingMode,
    TagTable,
    table_changes,
    table_deletion,
)
from infra.topology import Topology, parse_topology

ACCOUNT = "123456789012"
REGION = "eu-west-1"

YAML = """
version: 1
project: shop
environment: prod
topics:
  jobs: {}
queues:
  work:
    subscriptions: [{topic: jobs}]
job_types:
  mail.send: {topic: jobs, payload: "m:P", handler: "m:h", idempotency_guard: %(guard)s}
  mail.log: {topic: jobs, payload: "m:P", handler: "m:h"}
"""


def _topology(*, guard: bool) -> Topology:
    return parse_topology(YAML % {"guard": str(guard).lower()}, environment="prod")


@pytest.fixture
def desired() -> DesiredState:
    return desired_state(_topology(guard=True), ACCOUNT, REGION)


@pytest.fixture
def table(desired: DesiredState) -> DesiredTable:
    # The producer API's idempotency-key table is always declared too.
    [table] = [t for t in desired.tables if t.key == "succeeded"]
    return table


def _without_idempotency_keys(state: DesiredState) -> DesiredState:
    # Also without the scheduler's timer table, declared always too.
    return replace(
        state, tables=[t for t in state.tables if t.key not in ("idempotency", "timers")]
    )


def _existing(table: DesiredTable) -> ActualTable:
    """The table right after apply, as the emulator reports it (plus a foreign tag)."""
    return ActualTable(
        name=table.name,
        arn=table.arn,
        status="ACTIVE",
        key_schema=(("pk", "HASH", "S"),),
        billing_mode="PAY_PER_REQUEST",
        ttl_status="ENABLED",
        ttl_attribute="expires_at",
        kms_key=None,
        tags={**table.tags, "team": "x"},
    )


def _plan(steps: list[Step]) -> Plan:
    return Plan([s.change for s in steps if s.change is not None])


def test_guard_is_off_by_default_and_declares_no_table() -> None:
    topology = _topology(guard=False)
    assert topology.job_types["mail.send"].idempotency_guard is False
    state = desired_state(topology, ACCOUNT, REGION)
    # The API's idempotency keys and the scheduler's timers, always.
    assert [t.name for t in state.tables] == ["shop-prod-idempotency", "shop-prod-timers"]
    state = _without_idempotency_keys(state)
    assert all(c.kind != "table" for c in _plan(apply_steps(state, ActualState())).changes)


def test_desired_table(table: DesiredTable) -> None:
    assert table.name == "shop-prod-succeeded"
    assert table.arn == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/shop-prod-succeeded"
    assert (table.partition_key, table.partition_key_type) == ("pk", "S")
    assert table.billing_mode == "PAY_PER_REQUEST"
    assert table.ttl_attribute == "expires_at"
    assert table.tags == {"conveyor:project": "shop", "conveyor:environment": "prod"}


def test_missing_table_is_created_after_the_queues_with_ttl(desired: DesiredState) -> None:
    desired = _without_idempotency_keys(desired)
    steps = [s for s in apply_steps(desired, ActualState()) if s.stage != Stage.BUCKET]
    assert _plan(steps).render().splitlines()[-1] == "+ table shop-prod-succeeded"
    assert steps[-1].stage == Stage.TABLE
    assert steps[-1].operations == (
        CreateTable("shop-prod-succeeded", "pk", "S", "PAY_PER_REQUEST", desired.tables[0].tags),
        EnableTimeToLive("shop-prod-succeeded", "expires_at"),
    )


def test_up_to_date_table_is_an_empty_plan(table: DesiredTable) -> None:
    assert table_changes(table, _existing(table)) == []
    # TTL being switched on by AWS counts as on.
    assert table_changes(table, replace(_existing(table), ttl_status="ENABLING")) == []


def test_drift_is_one_update_in_order(table: DesiredTable) -> None:
    found = replace(
        _existing(table),
        billing_mode="PROVISIONED",
        ttl_status="DISABLED",
        tags={"conveyor:project": "shop"},
    )
    [(change, operations)] = table_changes(table, found)
    assert change.render() == (
        "~ table shop-prod-succeeded: BillingMode PROVISIONED → PAY_PER_REQUEST;"
        " TimeToLive (none) → expires_at; tag:conveyor:environment (none) → prod"
    )
    assert operations == (
        SetBillingMode(table.name, "PAY_PER_REQUEST"),
        EnableTimeToLive(table.name, "expires_at"),
        TagTable(table.name, table.arn, {"conveyor:environment": "prod"}),
    )


@pytest.mark.parametrize(
    ("changed", "says"),
    [
        ({"ttl_status": "ENABLED", "ttl_attribute": "ttl"}, "time to live is on attribute ttl"),
        ({"ttl_status": "DISABLING"}, "being disabled"),
        ({"key_schema": (("id", "HASH", "S"),)}, "has the key id (HASH S), but pk (HASH S)"),
        ({"key_schema": (("pk", "HASH", "N"),)}, "a table's key cannot change"),
        ({"status": "DELETING"}, "is being deleted"),
        ({"kms_key": "arn:aws:kms:eu-west-1:1:key/k"}, "AWS owned key; left alone"),
    ],
)
def test_what_cannot_or_should_not_change_is_a_note(
    table: DesiredTable, changed: dict[str, Any], says: str
) -> None:
    [(change, operations)] = table_changes(table, replace(_existing(table), **changed))
    assert change.action == "note"
    assert says in change.details["message"]
    assert operations == ()
    assert Plan([change]).is_empty


def test_a_wrong_key_hides_other_drift(table: DesiredTable) -> None:
    # The table is unusable as declared: only the note, no updates to a table to be replaced.
    found = replace(_existing(table), key_schema=(), billing_mode="PROVISIONED")
    assert [c.action for c, _ in table_changes(table, found)] == ["note"]


def test_destroy_deletes_the_table_last(desired: DesiredState, table: DesiredTable) -> None:
    actual = ActualState()
    actual.tables[table.name] = _existing(table)
    steps = destroy_steps(desired, actual)
    assert _plan(steps).render() == "- table shop-prod-succeeded"
    assert steps[-1].stage == DestroyStage.TABLE
    assert steps[-1].operations == (DeleteTable(table.name),)

    assert destroy_steps(desired, ActualState()) == []
    assert table_deletion(table, replace(_existing(table), status="DELETING")) == []
