"""The ``ecs`` backend: a pool is an ECS service; its desired replicas are the ``desiredCount``.

Names follow the CloudFormation export: cluster ``<project>-<environment>-workers``
(``CONVEYOR_ECS_CLUSTER`` overrides it), service ``<project>-<environment>-<pool>``.
ECS itself keeps the desired count and starts or stops tasks; a stopped task gets
SIGTERM and the worker drains within the task's stop timeout.

The export also attaches Application Auto Scaling target tracking to each service:
while that policy is active it moves ``desiredCount`` within ``replicas`` on its
own, so ``conveyor workers scale`` is a manual override until its next decision.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from infra import aws
from infra.aws.errors import ECS_MISSING_CODES, describe_aws_error, error_code
from infra.settings import ScalingSettings, load_settings
from infra.topology import Topology
from ops.scaling.errors import ScalingError
from ops.scaling.model import NodeInfo, PoolState

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient

CLUSTER_ENV = ScalingSettings.env_name("ecs_cluster")
#: DescribeServices and DescribeTasks take at most this many names per call.
DESCRIBE_MAX = 10


class EcsBackend:
    """Pools as ECS services of one cluster."""

    name = "ecs"

    def __init__(self, topology: Topology, *, cluster: str | None = None) -> None:
        self.topology = topology
        self.cluster = (
            cluster or load_settings().scaling.ecs_cluster or topology.resource_name("workers")
        )

    def service_name(self, pool: str) -> str:
        """The ECS service of ``pool``, as the CloudFormation export names it."""
        return self.topology.resource_name(pool)

    @property
    def _ecs(self) -> ECSClient:
        return aws.client("ecs")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            hint = ""
            if error_code(exc) in ECS_MISSING_CODES:
                hint = (
                    " (deploy the CloudFormation export: conveyor infra export cloudformation;"
                    f" or name the cluster with {CLUSTER_ENV})"
                )
            raise ScalingError(f"{doing}: {describe_aws_error(exc)}{hint}") from exc
        except BotoCoreError as exc:
            raise ScalingError(f"{doing}: {describe_aws_error(exc)}") from exc

    def _services(self, pools: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(pools), DESCRIBE_MAX):
            chunk = pools[start : start + DESCRIBE_MAX]
            names = [self.service_name(p) for p in chunk]
            with self._errors(f"reading ECS services in cluster {self.cluster}"):
                answer = self._ecs.describe_services(cluster=self.cluster, services=names)
            by_name = {s["serviceName"]: dict(s) for s in answer.get("services", [])}
            for pool, name in zip(chunk, names, strict=True):
                service = by_name.get(name)
                if service is not None and service.get("status") != "INACTIVE":
                    found[pool] = service
        return found

    def _tasks(self, pool: str) -> list[NodeInfo]:
        with self._errors(f"listing the tasks of {self.service_name(pool)}"):
            arns = self._ecs.list_tasks(
                cluster=self.cluster, serviceName=self.service_name(pool)
            ).get("taskArns", [])
            tasks: list[dict[str, Any]] = []
            for start in range(0, len(arns), DESCRIBE_MAX):
                answer = self._ecs.describe_tasks(
                    cluster=self.cluster, tasks=arns[start : start + DESCRIBE_MAX]
                )
                tasks += [dict(t) for t in answer.get("tasks", [])]
        nodes = []
        for task in tasks:
            started = task.get("startedAt")
            nodes.append(
                NodeInfo(
                    id=str(task["taskArn"]).rsplit("/", 1)[-1],
                    state=str(task.get("lastStatus", "unknown")).lower(),
                    host=task.get("availabilityZone"),
                    started_at=started.timestamp() if started is not None else None,
                )
            )
        return nodes

    def pools(self, pools: list[str] | None = None) -> dict[str, PoolState]:
        """desiredCount and runningCount of each pool's service, and its tasks."""
        names = pools or list(self.topology.pools)
        services = self._services(names)
        found: dict[str, PoolState] = {}
        for pool in names:
            service = services.get(pool)
            if service is None:
                found[pool] = PoolState(
                    pool,
                    desired=0,
                    running=0,
                    note=f"no ECS service {self.service_name(pool)} in cluster {self.cluster}",
                )
                continue
            found[pool] = PoolState(
                pool,
                desired=int(service.get("desiredCount", 0)),
                running=int(service.get("runningCount", 0)),
                nodes=self._tasks(pool),
            )
        return found

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """UpdateService desiredCount per pool; ECS starts or drains tasks."""
        missing = [p for p in desired if p not in self._services(list(desired))]
        if missing:
            raise ScalingError(
                f"no ECS service {self.service_name(missing[0])} in cluster {self.cluster}"
                " (deploy the CloudFormation export: conveyor infra export cloudformation;"
                f" or name the cluster with {CLUSTER_ENV})"
            )
        for pool, count in desired.items():
            with self._errors(f"setting the desired count of {self.service_name(pool)}"):
                self._ecs.update_service(
                    cluster=self.cluster, service=self.service_name(pool), desiredCount=count
                )
