"""Schemathesis against the running API's own OpenAPI: no 5xx but 503, whatever the input.

One ``conveyor api`` process (on the emulator, provisioned) serves every operation;
a few deterministic examples per operation keep the run short and repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from infra.emulator import EmulatorProcess
from infra.provision import apply
from infra.topology import load_topology
from tests.integration.test_api_http import QUEUES_FILE, _start_api
from tests.support.emulator import fresh_environment, pointed_at
from tests.support.processes import Api

pytestmark = pytest.mark.integration

#: Examples per operation: enough to reach every branch of the schemas, few enough to be quick.
EXAMPLES_PER_OPERATION = 5


@pytest.fixture(scope="module")
def schema_api(
    emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    with (
        pytest.MonkeyPatch.context() as patch,
        pointed_at(emulator.endpoint_url, fresh_environment(), patch) as aws_env,
    ):
        apply(load_topology(QUEUES_FILE, environment=aws_env.environment))
        log: Path = tmp_path_factory.mktemp("schema") / "api.log"
        yield from _start_api(aws_env.env, log)


def test_no_server_error_but_503(schema_api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{schema_api.url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: schemathesis.Case) -> None:
            response = case.call(base_url=schema_api.url, timeout=30)
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}:"
                    f" {response.text[:300]}"
                )

        probe()
    assert operations >= 10  # every job type's route, the batch, status, health, metrics
    assert failures == []
