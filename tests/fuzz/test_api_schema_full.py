"""The bigger schemathesis run of ``make faults``: many random examples per operation of
the running API's OpenAPI, no 5xx but 503.

``make test`` runs the short, deterministic one (tests/integration/test_api_schema.py,
the producer API's own); this one reuses its API process and only runs at full size.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from tests.integration.test_api_schema import schema_api  # noqa: F401 - the fixture
from tests.support.processes import Api
from tests.support.scenarios import FULL, report

pytestmark = pytest.mark.skipif(
    not FULL,
    reason="full size only (make faults); make test runs tests/integration/test_api_schema.py",
)

#: Random (not derandomized) examples per operation.
EXAMPLES_PER_OPERATION = 100


def test_many_random_requests_get_no_server_error_but_503(schema_api: Api) -> None:  # noqa: F811 - the fixture
    schema = schemathesis.openapi.from_url(f"{schema_api.url}/openapi.json")
    failures: list[str] = []
    cases = 0
    for result in schema.get_all_operations():
        if not isinstance(result, Ok):
            pytest.fail(f"the API's OpenAPI has an unusable operation: {result.err()}")
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: schemathesis.Case[Any]) -> None:
            nonlocal cases
            cases += 1
            response = case.call(base_url=schema_api.url, timeout=30)
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}:"
                    f" {response.text[:300]}"
                )

        probe()
    line = f"schemathesis on the API: requests={cases} server_errors_but_503={len(failures)}"
    report(line)
    assert failures == []
