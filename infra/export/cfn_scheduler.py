"""CloudFormation for the scheduler role: its IAM role and its ECS service.

Used by :mod:`infra.export.cloudformation`. The scheduler runs as an ECS service of
``SCHEDULER_REPLICAS`` tasks (any number may run: each due job is claimed with a
conditional write), with a least-privilege role:

- ``sns:Publish`` on every topic (the topic policies name the role too);
- on the timer table: GetItem (the watermark), UpdateItem (claims, releases, the
  watermark), BatchWriteItem (deleting published timers), Query on its due-time
  index; PutItem, BatchGetItem and DeleteItem too, for the cron schedules' state and
  tick claims in the same table;
- BatchWriteItem on the job ledger (if a job type records status): published jobs
  are recorded as queued;
- ``s3:PutObject`` on the claim-check objects (a cron job's large payload).
"""

from __future__ import annotations

from typing import Any

from infra.aws.names import LEDGER_TABLE, TIMERS_TABLE
from infra.export.cfn_ecs import awslogs, fargate_service, health_check
from infra.export.cfn_storage import objects_of
from infra.timers import DUE_INDEX
from infra.topology import Topology

#: The scheduler's /healthz port inside its container (loopback: ECS checks inside it).
SCHEDULER_HEALTH_PORT = 8002
SCHEDULER_HEALTH_HOST = "127.0.0.1"
#: Two tasks: one may be replaced (deploy, AZ loss) while the other publishes.
SCHEDULER_REPLICAS = 2
SCHEDULER_CPU = "256"
SCHEDULER_MEMORY = "512"
#: A stopping scheduler ends its turn (a publish: seconds) and exits.
SCHEDULER_STOP_TIMEOUT_S = 30
TIMER_TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",  # the cron schedules' state items, one read per turn
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",  # a tick claim released after a failed publish
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
)
#: The API stores delayed jobs (BatchWriteItem), lowers the watermark (UpdateItem), and
#: cancels them: reads one (GetItem) and deletes it while no scheduler holds it.
API_TIMER_ACTIONS = (
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:UpdateItem",
)


def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def api_timer_statements(table_ids: dict[str, str]) -> list[dict[str, Any]]:
    """What the producer API may do with the timer table."""
    if TIMERS_TABLE not in table_ids:
        return []
    return [
        {
            "Sid": "DelayedJobs",
            "Effect": "Allow",
            "Action": list(API_TIMER_ACTIONS),
            "Resource": [_arn(table_ids[TIMERS_TABLE])],
        }
    ]


def scheduler_statements(
    topology: Topology,
    topic_ids: dict[str, str],
    table_ids: dict[str, str],
    bucket_id: str | None,
) -> list[dict[str, Any]]:
    """The scheduler role's inline policy statements."""
    timers = table_ids[TIMERS_TABLE]
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PublishDueJobs",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [{"Ref": topic_ids[key]} for key in topology.topics],
        },
        {
            "Sid": "Timers",
            "Effect": "Allow",
            "Action": list(TIMER_TABLE_ACTIONS),
            "Resource": [_arn(timers)],
        },
        {
            "Sid": "DueTimers",
            "Effect": "Allow",
            "Action": ["dynamodb:Query"],
            "Resource": [{"Fn::Sub": f"${{{timers}.Arn}}/index/{DUE_INDEX}"}],
        },
    ]
    if LEDGER_TABLE in table_ids:
        statements.append(
            {
                "Sid": "JobLedger",
                "Effect": "Allow",
                "Action": ["dynamodb:BatchWriteItem"],
                "Resource": [_arn(table_ids[LEDGER_TABLE])],
            }
        )
    if bucket_id is not None:
        statements.append(
            {
                "Sid": "ClaimCheckPayloads",
                "Effect": "Allow",
                "Action": ["s3:PutObject"],
                "Resource": objects_of(bucket_id, topology.job_types),
            }
        )
    return statements


def scheduler_task(
    family: Any, role: str, log_group: str, security_group: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The scheduler's ``AWS::ECS::TaskDefinition`` and ``AWS::ECS::Service``
    (the service refers to the task definition as ``TaskDefinitionScheduler``)."""
    health = (
        "import sys, urllib.request; sys.exit(urllib.request.urlopen("
        f"'http://{SCHEDULER_HEALTH_HOST}:{SCHEDULER_HEALTH_PORT}/healthz', timeout=3).status"
        " != 200)"
    )
    task = {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": family,
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": SCHEDULER_CPU,
            "Memory": SCHEDULER_MEMORY,
            "TaskRoleArn": _arn(role),
            "ExecutionRoleArn": _arn("TaskExecutionRole"),
            "ContainerDefinitions": [
                {
                    "Name": "scheduler",
                    "Image": {"Ref": "Image"},
                    "Essential": True,
                    "Command": ["scheduler", "--health-port", str(SCHEDULER_HEALTH_PORT)],
                    "Environment": [
                        {"Name": "CONVEYOR_ENVIRONMENT", "Value": {"Ref": "EnvironmentName"}},
                        {"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}},
                        {
                            "Name": "CONVEYOR_SCHEDULING_HEALTH_HOST",
                            "Value": SCHEDULER_HEALTH_HOST,
                        },
                    ],
                    "StopTimeout": SCHEDULER_STOP_TIMEOUT_S,
                    "HealthCheck": health_check(health),
                    "LogConfiguration": awslogs({"Ref": log_group}, "scheduler"),
                }
            ],
        },
    }
    service = fargate_service(family, "TaskDefinitionScheduler", SCHEDULER_REPLICAS, security_group)
    return task, service
