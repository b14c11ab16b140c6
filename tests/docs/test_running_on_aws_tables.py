"""docs/running-on-aws.md's resource and IAM tables say what the CloudFormation export creates.

The template is exported from the sample queues.yaml with every optional table
switched on (a job type with ``idempotency_guard``; the sample already records job
status), so nothing the export can create is left out of the comparison.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from infra.export import cloudformation_template
from infra.topology import parse_topology
from tests import REPO

PAGE = REPO / "docs" / "running-on-aws.md"
#: The doc's words for the principals a role trusts.
TRUSTED = {"ecs-tasks.amazonaws.com": "ECS tasks", "pods.eks.amazonaws.com": "EKS Pod Identity"}


def _template() -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "queues.yaml").read_text())
    raw["job_types"]["image.resize"]["idempotency_guard"] = True
    topology = parse_topology(yaml.safe_dump(raw), source="queues.yaml")
    assert topology.ledger_job_types(), "the sample should record some job type's status"
    return cloudformation_template(topology)


def _table_after(heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after ``heading``'s line."""
    lines = PAGE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == heading)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # no header, no separator


def _code(text: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", text))


def _roles(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role"
    }


def _granted(props: dict[str, Any]) -> set[str]:
    """Every action a role's inline policies allow."""
    actions: set[str] = set()
    for policy in props.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                action = statement["Action"]
                actions |= {action} if isinstance(action, str) else set(action)
    return actions


def _row_for(role: str, rows: list[list[str]]) -> list[str]:
    key = "WorkerRole<Pool>" if role.startswith("WorkerRole") else role
    matches = [row for row in rows if key in _code(row[0])]
    assert matches, f"the IAM table has no row for {key}"
    return matches[0]


def test_resource_table_lists_every_resource_type_of_the_template() -> None:
    in_template = {r["Type"] for r in _template()["Resources"].values()}
    rows = _table_after("The template contains:")
    in_doc = {c for row in rows for c in _code(row[0]) if c.startswith("AWS::")}
    assert in_template - in_doc == set(), "created by the export, missing from the doc's table"
    assert in_doc - in_template == set(), "in the doc's table, never created by the export"


def test_iam_table_matches_every_role_its_trust_and_its_actions() -> None:
    template = _template()
    rows = _table_after("### IAM")
    roles = _roles(template)
    documented = {c for row in rows for c in _code(row[0])}
    expected_rows = {"WorkerRole<Pool>" if r.startswith("WorkerRole") else r for r in roles}
    assert documented == expected_rows
    alike_workers = {n for n in roles if n.startswith("WorkerRole")}
    for name, props in roles.items():
        row = _row_for(name, rows)
        statements = props["AssumeRolePolicyDocument"]["Statement"]
        services = {s["Principal"]["Service"] for s in statements}
        assert {TRUSTED[s] for s in services} == {t.strip() for t in row[1].split(",")}, name
        named = {c for c in _code(row[2]) if re.fullmatch(r"[a-z0-9]+:[A-Za-z*]+", c)}
        # One row for every worker pool: the union of what the pools are granted.
        alike = alike_workers if name in alike_workers else {name}
        granted = set().union(*(_granted(roles[n]) for n in alike))
        assert named == granted, f"{name}: the doc names {sorted(named)}, the template {granted}"
        for managed in props.get("ManagedPolicyArns", []):
            policy = str(managed.get("Fn::Sub", managed)).rsplit("/", 1)[-1]
            assert policy in _code(row[2]), f"{name}: managed policy {policy} not in the doc"
