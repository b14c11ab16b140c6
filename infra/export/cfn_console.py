"""CloudFormation for the web console (``conveyor console``): its IAM role and ECS service.

Used by :mod:`infra.export.cloudformation` when the export is asked for a console
(``conveyor infra export cloudformation --console read-only|operate``). The mode is
chosen at export time, so the role holds exactly what that deployment may do:

- always (``read-only`` and ``operate``): read every queue's and DLQ's attributes
  (depths) and CloudWatch's age of their oldest message; peek a bounded sample of each DLQ (receive,
  then release: ``ChangeMessageVisibility`` back to 0, see :mod:`ops.dlq.peek`); read
  the job ledger (``BatchGetItem``) when a job type records status, an idempotency
  key (``GetItem``), the schedules' state in the timer table; read the pools' ECS
  services and their tasks (desired/running nodes);
- only ``operate``: the DLQ actions (redrive sends to the source queue and deletes
  from the DLQ; delete deletes), cancelling a job (as the API cancels: the ledger's
  runs, a delayed job's timer), pausing, resuming and triggering a schedule (a
  trigger publishes the job as the scheduler does: the topic policies let the role
  publish), and scaling a pool (``ecs:UpdateService`` on the pool services only).

A ``read-only`` deployment also runs ``conveyor console --read-only``, so its pages
offer no action the role could not perform.

The service runs one task (sessions are signed with a per-process key unless
``CONVEYOR_CONSOLE_SESSION_SECRET`` is set) on :data:`CONSOLE_PORT`; its security
group lets in TCP on that port from ``ConsoleIngressCidr`` only (a VPN's or an
internal load balancer's range) and lets out HTTPS to the AWS APIs. Who may log in is
the ``ConsoleKeys`` parameter: the API's keys document (sha256 hashes only) with the
``viewer`` and ``operator`` scopes.
"""

from __future__ import annotations

from typing import Any, Literal

from infra.aws.names import LEDGER_TABLE, TIMERS_TABLE
from infra.export.cfn_ecs import awslogs, fargate_service, health_check
from infra.export.cfn_hardening import HTTPS_PORT
from infra.export.cfn_storage import IDEMPOTENCY_TABLE_KEY, objects_of

#: What an export may ask for: no console, a read-only one, one that may act.
ConsoleMode = Literal["read-only", "operate"]
CONSOLE_MODES: tuple[ConsoleMode, ...] = ("read-only", "operate")
#: The console's port inside its container (``conveyor console --port``).
CONSOLE_PORT = 8080
CONSOLE_CPU = "256"
CONSOLE_MEMORY = "512"
#: A stopping console finishes the request in hand (an action's batch: seconds).
CONSOLE_STOP_TIMEOUT_S = 30

#: Depths and ages of queues and DLQs (the overview, the DLQ list).
READ_QUEUE_ACTIONS = ("sqs:GetQueueAttributes", "sqs:GetQueueUrl")
#: A bounded peek: receive a sample, release it (visibility back to 0).
PEEK_DLQ_ACTIONS = ("sqs:ChangeMessageVisibility", "sqs:ReceiveMessage")
#: A job's page: its ledger record.
READ_LEDGER_ACTIONS = ("dynamodb:BatchGetItem",)
#: The pools page: desired and running tasks of the pool services, and the tasks.
READ_SERVICE_ACTIONS = ("ecs:DescribeServices",)
READ_TASK_ACTIONS = ("ecs:DescribeTasks",)
LIST_TASK_ACTIONS = ("ecs:ListTasks",)
#: Redrive and delete: remove from the DLQ (DeleteMessageBatch is authorised by it) …
WRITE_DLQ_ACTIONS = ("sqs:DeleteMessage",)
#: … and send back to the source queue (SendMessageBatch is authorised by it).
REDRIVE_QUEUE_ACTIONS = ("sqs:SendMessage",)
#: Scaling a pool: the ECS service's desired count.
SCALE_ACTIONS = ("ecs:UpdateService",)
#: The overview's age of each queue's oldest message (``conveyor status``'s reading).
#: CloudWatch has no resource-level permission for it: the one ``*`` of the role.
READ_METRIC_ACTIONS = ("cloudwatch:GetMetricStatistics",)
#: The jobs page looks a job up by its idempotency key.
READ_IDEMPOTENCY_ACTIONS = ("dynamodb:GetItem",)
#: The schedules page: each schedule's state (paused, last and next fire).
READ_SCHEDULE_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:GetItem")
#: Cancelling a job, as the API does: its runs in the ledger (a delayed job never
#: published: a cancelled record), and a delayed job's timer read and deleted.
CANCEL_LEDGER_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
CANCEL_TIMER_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:GetItem")
#: Pause, resume (the schedule's state) and trigger (its last fire) a schedule.
SCHEDULE_ACTIONS = ("dynamodb:UpdateItem",)
#: A triggered schedule's job is published (PublishBatch is authorised by sns:Publish),
#: recorded as queued in the ledger, and its large payload stored.
TRIGGER_TOPIC_ACTIONS = ("sns:Publish",)
TRIGGER_LEDGER_ACTIONS = ("dynamodb:BatchWriteItem",)


def _arn(logical: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, "Arn"]}


def _allow(
    sid: str, actions: tuple[str, ...], resources: list[Any], **extra: Any
) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": resources, **extra}


def console_statements(
    mode: ConsoleMode,
    *,
    queue_ids: dict[str, str],
    dlq_ids: dict[str, str],
    table_ids: dict[str, str],
    service_ids: list[str],
    topic_ids: dict[str, str],
    bucket_id: str | None,
    job_types: list[str],
) -> list[dict[str, Any]]:
    """The console role's inline policy statements for ``mode``."""
    queues = [_arn(queue_ids[key]) for key in sorted(queue_ids)]
    dlqs = [_arn(dlq_ids[key]) for key in sorted(dlq_ids)]
    services = [{"Ref": logical} for logical in service_ids]  # Ref: the service's ARN
    statements = [
        _allow("ReadQueues", READ_QUEUE_ACTIONS, queues + dlqs),
        _allow("PeekDeadLetters", PEEK_DLQ_ACTIONS, dlqs),
        _allow("ReadQueueAges", READ_METRIC_ACTIONS, ["*"]),
    ]
    if LEDGER_TABLE in table_ids:
        statements.append(
            _allow("ReadJobLedger", READ_LEDGER_ACTIONS, [_arn(table_ids[LEDGER_TABLE])])
        )
    if IDEMPOTENCY_TABLE_KEY in table_ids:
        statements.append(
            _allow(
                "LookUpIdempotencyKeys",
                READ_IDEMPOTENCY_ACTIONS,
                [_arn(table_ids[IDEMPOTENCY_TABLE_KEY])],
            )
        )
    timers = [_arn(table_ids[TIMERS_TABLE])] if TIMERS_TABLE in table_ids else []
    if timers:
        statements.append(_allow("ReadSchedules", READ_SCHEDULE_ACTIONS, timers))
    if services:
        cluster_arn = _arn("Cluster")
        statements += [
            _allow("ReadPools", READ_SERVICE_ACTIONS, services),
            _allow(
                "ReadNodes",
                READ_TASK_ACTIONS,
                [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"
                        ":task/${Cluster}/*"
                    }
                ],
            ),
            # ListTasks is authorised on the cluster's container instances; the
            # condition keeps it to this cluster.
            _allow(
                "ListNodes",
                LIST_TASK_ACTIONS,
                [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}"
                        ":container-instance/${Cluster}/*"
                    }
                ],
                Condition={"ArnEquals": {"ecs:cluster": cluster_arn}},
            ),
        ]
    if mode == "read-only":
        return statements
    statements += [
        _allow("RedriveAndDeleteDeadLetters", WRITE_DLQ_ACTIONS, dlqs),
        _allow("RedriveToSourceQueues", REDRIVE_QUEUE_ACTIONS, queues),
    ]
    if LEDGER_TABLE in table_ids:
        ledger = [_arn(table_ids[LEDGER_TABLE])]
        statements += [
            _allow("CancelJobs", CANCEL_LEDGER_ACTIONS, ledger),
            _allow("RecordTriggeredJobs", TRIGGER_LEDGER_ACTIONS, ledger),
        ]
    if timers:
        statements += [
            _allow("CancelDelayedJobs", CANCEL_TIMER_ACTIONS, timers),
            _allow("PauseResumeTriggerSchedules", SCHEDULE_ACTIONS, timers),
        ]
    topics = [{"Ref": topic_ids[key]} for key in sorted(topic_ids)]
    statements.append(_allow("TriggerSchedules", TRIGGER_TOPIC_ACTIONS, topics))
    if bucket_id is not None:
        objects = objects_of(bucket_id, job_types)
        statements.append(_allow("TriggeredPayloads", ("s3:PutObject",), objects))
    if services:
        statements.append(_allow("ScalePools", SCALE_ACTIONS, services))
    return statements


def console_security_group(tags: list[dict[str, Any]]) -> dict[str, Any]:
    """``AWS::EC2::SecurityGroup`` of the console's task: its port from
    ``ConsoleIngressCidr`` only, HTTPS out."""
    return {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": (
                f"Conveyor web console: TCP {CONSOLE_PORT} from ConsoleIngressCidr,"
                " HTTPS to AWS APIs"
            ),
            "VpcId": {"Ref": "VpcId"},
            "SecurityGroupIngress": [
                {
                    "Description": "People reaching the console (a VPN, an internal load balancer)",
                    "IpProtocol": "tcp",
                    "FromPort": CONSOLE_PORT,
                    "ToPort": CONSOLE_PORT,
                    "CidrIp": {"Ref": "ConsoleIngressCidr"},
                }
            ],
            "SecurityGroupEgress": [
                {
                    "Description": "HTTPS to the AWS APIs (SQS, DynamoDB, ECS, ECR, Logs)",
                    "IpProtocol": "tcp",
                    "FromPort": HTTPS_PORT,
                    "ToPort": HTTPS_PORT,
                    "CidrIp": "0.0.0.0/0",
                }
            ],
            "Tags": tags,
        },
    }


def console_parameters() -> dict[str, Any]:
    """The template parameters a console adds."""
    return {
        "ConsoleIngressCidr": {
            "Type": "String",
            "AllowedPattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
            "Description": f"Who may reach the console's port {CONSOLE_PORT}: a CIDR (a VPN's).",
        },
        "ConsoleKeys": {
            "Type": "String",
            "NoEcho": True,
            "Description": "The keys document of who may log in: the API's format (sha256"
            " hashes only), each key with scopes [viewer] or [operator].",
        },
    }


def console_task(
    family: Any, mode: ConsoleMode, role: str, log_group: str, security_group: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The console's ``AWS::ECS::TaskDefinition`` and ``AWS::ECS::Service`` (the service
    refers to the task definition as ``TaskDefinitionConsole``)."""
    health = (
        "import sys, urllib.request; sys.exit(urllib.request.urlopen("
        f"'http://127.0.0.1:{CONSOLE_PORT}/healthz', timeout=3).status != 200)"
    )
    command = ["console", "--host", "0.0.0.0", "--port", str(CONSOLE_PORT)]  # noqa: S104
    if mode == "read-only":
        command.append("--read-only")
    task = {
        "Type": "AWS::ECS::TaskDefinition",
        "Properties": {
            "Family": family,
            "RequiresCompatibilities": ["FARGATE"],
            "NetworkMode": "awsvpc",
            "Cpu": CONSOLE_CPU,
            "Memory": CONSOLE_MEMORY,
            "TaskRoleArn": _arn(role),
            "ExecutionRoleArn": _arn("TaskExecutionRole"),
            "ContainerDefinitions": [
                {
                    "Name": "console",
                    "Image": {"Ref": "Image"},
                    "Essential": True,
                    "Command": command,
                    "PortMappings": [{"ContainerPort": CONSOLE_PORT, "Protocol": "tcp"}],
                    "Environment": [
                        {"Name": "CONVEYOR_ENVIRONMENT", "Value": {"Ref": "EnvironmentName"}},
                        {"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}},
                        # Pools are this stack's ECS services (ops.scaling.backends.ecs).
                        {"Name": "CONVEYOR_SCALING_BACKEND", "Value": "ecs"},
                        {"Name": "CONVEYOR_ECS_CLUSTER", "Value": {"Ref": "Cluster"}},
                        {"Name": "CONVEYOR_API_KEYS", "Value": {"Ref": "ConsoleKeys"}},
                    ],
                    "StopTimeout": CONSOLE_STOP_TIMEOUT_S,
                    "HealthCheck": health_check(health),
                    "LogConfiguration": awslogs({"Ref": log_group}, "console"),
                }
            ],
        },
    }
    service = fargate_service(family, "TaskDefinitionConsole", 1, security_group)
    return task, service
