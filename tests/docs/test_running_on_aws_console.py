"""docs/running-on-aws.md's table of the console's role says what each export mode grants.

Rows marked ``both`` are the read-only role; the read-only rows and the ``operate``
rows together are the operating console's role.
"""

from __future__ import annotations

import re

from infra.export import cloudformation_template
from infra.export.cfn_console import ConsoleMode
from infra.topology import load_topology
from tests import REPO
from tests.docs.test_running_on_aws_tables import _granted, _table_after

HEADING = "does; every resource but CloudWatch's is the stack's own:"


def _documented(modes: set[str]) -> set[str]:
    rows = _table_after(HEADING)
    assert {row[0] for row in rows} == {"both", "operate"}
    return {
        code
        for mode, _on, may in rows
        if mode in modes
        for code in re.findall(r"`([a-z0-9]+:[A-Za-z]+)`", may)
    }


def _role_actions(mode: ConsoleMode) -> set[str]:
    template = cloudformation_template(load_topology(REPO / "queues.yaml"), console=mode)
    return _granted(template["Resources"]["ConsoleRole"]["Properties"])


def test_the_read_only_rows_are_the_read_only_role() -> None:
    assert _documented({"both"}) == _role_actions("read-only")


def test_all_rows_are_the_operating_role() -> None:
    assert _documented({"both", "operate"}) == _role_actions("operate")
