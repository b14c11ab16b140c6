"""A CloudFormation template of queues.yaml: what ``conveyor infra apply`` creates, and more.

:func:`cloudformation_template` is pure. The messaging resources are derived from
:func:`infra.provision.desired.desired_state` — the very attributes ``infra apply``
sets — computed for placeholder names, account and region and then turned into
CloudFormation intrinsics, so the template and the provisioner cannot drift:

- SNS topics, SQS queues and DLQs (RedrivePolicy, RedriveAllowPolicy, SSE-SQS),
  subscriptions (raw delivery, filter policy on the body's ``type``), queue
  policies (only the subscribed topics may send), the DynamoDB tables (the
  idempotency guard's and the job ledger's when a job type enables them, the
  producer API's idempotency keys), the claim-check S3 bucket (SSE-S3, public
  access blocked, objects expiring);
- the hardening of :mod:`infra.export.cfn_hardening`: topic policies (only the
  API role and the topic's ``publishers`` publish), TLS-only policies, ``Retain``
  on DLQs, tables and the bucket, a security group per ECS service;
- IAM roles with least-privilege inline policies: one for the producer API, one
  per worker pool, one for the scheduler (trusted by ECS tasks and by EKS Pod
  Identity); the storage resources and their statements are built in
  :mod:`infra.export.cfn_storage`, the scheduler's in :mod:`infra.export.cfn_scheduler`;
- the scheduler (``conveyor scheduler``: delayed jobs, cron schedules) as an ECS
  service of two tasks;
- an ECS cluster (Fargate) with a service per pool running ``conveyor worker
  --pool P``, and Application Auto Scaling target tracking on backlog per task
  (metric math over SQS's and Container Insights' own metrics: no publisher);
- when asked (``console``), the web console: its role (read-only, or allowed to act)
  and an ECS service of one task (:mod:`infra.export.cfn_console`);
- CloudWatch alarms: a message in a DLQ, and the oldest message of a queue
  older than :data:`OLDEST_MESSAGE_ALARM_S`; on the EMF job metrics, the
  dead-letter rate and the queue lag of each queue, and a dashboard of the
  environment (:mod:`infra.export.cfn_metrics`).

Resource names are ``<project>-${EnvironmentName}-<name>``: the parameter
defaults to the topology's environment, so the template deploys it as
``infra apply`` would, and other environments from the same file.
"""

from __future__ import annotations

import json
import math
from typing import Any

from infra.export.cfn_console import (
    ConsoleMode,
    console_parameters,
    console_security_group,
    console_statements,
    console_task,
)
from infra.export.cfn_ecs import awslogs, health_check
from infra.export.cfn_hardening import (
    RETAIN,
    bucket_policy_resource,
    security_group_resource,
    topic_policy_resource,
)
from infra.export.cfn_metrics import dashboard, job_metric_alarms
from infra.export.cfn_scheduler import (
    api_timer_statements,
    scheduler_statements,
    scheduler_task,
)
from infra.export.cfn_storage import (
    api_storage_statements,
    bucket_resource,
    table_resource,
    worker_storage_statements,
)
from infra.export.names import LogicalIds, backlog_target
from infra.provision.desired import (
    TAG_ENVIRONMENT,
    TAG_PROJECT,
    DesiredQueue,
    DesiredState,
    desired_state,
)
from infra.topology import Topology

#: Placeholders the desired state is computed with; they become ``Fn::Sub`` variables.
ENV_PLACEHOLDER = "${EnvironmentName}"
ACCOUNT_PLACEHOLDER = "${AWS::AccountId}"
REGION_PLACEHOLDER = "${AWS::Region}"
#: ``desired_state`` computes the partition from the region: ``aws`` for a placeholder.
_ARN_PREFIX = "arn:aws:"
_ARN_PREFIX_SUB = "arn:${AWS::Partition}:"

#: The alarm on a queue's oldest message fires past this age (seconds).
OLDEST_MESSAGE_ALARM_S = 900
#: The worker's /healthz port inside its container.
WORKER_HEALTH_PORT = 8001
#: ECS checks health inside the container: /healthz need not listen beyond loopback
#: (the image's default is 0.0.0.0, for probes from outside the container).
WORKER_HEALTH_HOST = "127.0.0.1"
#: Fargate task size of a worker node.
WORKER_CPU = "512"
WORKER_MEMORY = "1024"
#: Seconds ECS waits after SIGTERM before killing a worker (the Fargate maximum).
WORKER_STOP_TIMEOUT_S = 120
LOG_RETENTION_DAYS = 30

#: What a worker does on its queues and on their DLQs. DeleteMessageBatch and
#: ChangeMessageVisibilityBatch are no IAM actions: the single-message actions authorise them.
WORKER_QUEUE_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
)
WORKER_DLQ_ACTIONS = ("sqs:GetQueueUrl", "sqs:SendMessage")
#: PublishBatch is authorised by sns:Publish; /readyz reads the topics' attributes.
API_TOPIC_ACTIONS = ("sns:GetTopicAttributes", "sns:Publish")

_INT_ATTRIBUTES = frozenset(
    {"VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds"}
)
_BOOL_ATTRIBUTES = frozenset(
    {
        "SqsManagedSseEnabled",
        "FifoQueue",
        "ContentBasedDeduplication",
        "FifoTopic",
        "RawMessageDelivery",
    }
)
_JSON_ATTRIBUTES = frozenset({"RedrivePolicy", "RedriveAllowPolicy", "FilterPolicy"})


def _sub(text: str) -> Any:
    """``text``, or ``{"Fn::Sub": …}`` if it holds a placeholder (ARNs get the real partition)."""
    if "${" not in text:
        return text
    return {"Fn::Sub": text.replace(_ARN_PREFIX, _ARN_PREFIX_SUB)}


def _intrinsics(document: Any, refs: dict[str, Any]) -> Any:
    """``document`` with known ARNs replaced by references and placeholders by ``Fn::Sub``."""
    if isinstance(document, dict):
        return {k: _intrinsics(v, refs) for k, v in document.items()}
    if isinstance(document, list):
        return [_intrinsics(v, refs) for v in document]
    if isinstance(document, str):
        return refs[document] if document in refs else _sub(document)
    return document


def _tags(tags: dict[str, str]) -> list[dict[str, Any]]:
    return [{"Key": k, "Value": _sub(v)} for k, v in sorted(tags.items())]


def _attribute(name: str, value: str, refs: dict[str, Any]) -> Any:
    """A desired-state attribute (a string, as the AWS APIs take it) as CloudFormation's type."""
    if name in _INT_ATTRIBUTES:
        return int(value)
    if name in _BOOL_ATTRIBUTES:
        return value == "true"
    if name in _JSON_ATTRIBUTES:
        return _intrinsics(json.loads(value), refs)
    if name == "FilterPolicyScope":
        return value
    raise ValueError(f"no CloudFormation mapping for attribute {name}")  # a new attribute


def _get_att(logical: str, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [logical, attribute]}


#: Lets ECS tasks assume a role (every role here, the task execution role included).
ECS_TASKS_TRUST: dict[str, Any] = {
    "Effect": "Allow",
    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
    "Action": "sts:AssumeRole",
}


def _role(description: str, statements: list[dict[str, Any]], policy_name: str) -> dict[str, Any]:
    """A role ECS tasks and EKS Pod Identity may assume, with one inline policy."""
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "Description": description,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    ECS_TASKS_TRUST,
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "pods.eks.amazonaws.com"},
                        "Action": ["sts:AssumeRole", "sts:TagSession"],
                    },
                ],
            },
            "Policies": [
                {
                    "PolicyName": policy_name,
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                }
            ],
        },
    }


class _Builder:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        templated = topology.model_copy(update={"environment": ENV_PLACEHOLDER})
        self.state: DesiredState = desired_state(templated, ACCOUNT_PLACEHOLDER, REGION_PLACEHOLDER)
        self.ids = LogicalIds()
        self.resources: dict[str, Any] = {}
        self.outputs: dict[str, Any] = {}
        # desired ARN → the intrinsic that yields it (references order the creation).
        self.refs: dict[str, Any] = {}
        self.queue_ids: dict[str, str] = {}
        self.dlq_ids: dict[str, str] = {}
        self.topic_ids: dict[str, str] = {}
        #: Table key (``succeeded``, ``jobs``, ``idempotency``) → logical id.
        self.table_ids: dict[str, str] = {}
        self.bucket_id: str | None = None
        #: The console's role when it may trigger schedules (it then publishes).
        self.console_publishes: list[Any] = []

    def name(self, suffix: str) -> Any:
        """``<project>-${EnvironmentName}-<suffix>``."""
        return _sub(f"{self.topology.project}-{ENV_PLACEHOLDER}-{suffix}")

    # -- messaging, from the desired state --------------------------------------------

    def topics(self) -> None:
        for topic in self.state.topics:
            logical = self.ids("Topic", topic.key)
            self.topic_ids[topic.key] = logical
            self.refs[topic.arn] = {"Ref": logical}
            props: dict[str, Any] = {"TopicName": _sub(topic.name), "Tags": _tags(topic.tags)}
            props |= {k: _attribute(k, v, {}) for k, v in topic.attributes.items()}
            self.resources[logical] = {"Type": "AWS::SNS::Topic", "Properties": props}

    def _queue(self, queue: DesiredQueue, logical: str) -> None:
        props: dict[str, Any] = {"QueueName": _sub(queue.name)}
        for key, value in queue.attributes.items():
            # The DLQ's RedriveAllowPolicy names its queue by ARN, not by reference: the
            # queue refers to the DLQ (RedrivePolicy), and references must not go in a circle.
            refs = {} if key == "RedriveAllowPolicy" else self.refs
            props[key] = _attribute(key, value, refs)
        props["Tags"] = _tags(queue.tags)
        self.resources[logical] = {"Type": "AWS::SQS::Queue", "Properties": props}
        if queue.kind == "dlq":
            # Dead-lettered jobs wait there for a person: they outlive the stack.
            self.resources[logical] |= RETAIN

    def queues(self) -> None:
        for dlq in self.state.dlqs:
            logical = self.ids("Dlq", dlq.key)
            self.dlq_ids[dlq.key] = logical
            self.refs[dlq.arn] = _get_att(logical)
        for queue in self.state.queues:
            logical = self.ids("Queue", queue.key)
            self.queue_ids[queue.key] = logical
            self.refs[queue.arn] = _get_att(logical)
        for dlq in self.state.dlqs:
            self._queue(dlq, self.dlq_ids[dlq.key])
        for queue in self.state.queues:
            self._queue(queue, self.queue_ids[queue.key])
            if queue.policy is not None:
                self.resources[self.ids("QueuePolicy", queue.key)] = {
                    "Type": "AWS::SQS::QueuePolicy",
                    "Properties": {
                        "Queues": [{"Ref": self.queue_ids[queue.key]}],
                        "PolicyDocument": _intrinsics(json.loads(queue.policy), self.refs),
                    },
                }

    def subscriptions(self) -> None:
        for sub in self.state.subscriptions:
            props: dict[str, Any] = {
                "Protocol": "sqs",
                "TopicArn": {"Ref": self.topic_ids[sub.topic_key]},
                "Endpoint": _get_att(self.queue_ids[sub.queue_key]),
            }
            props |= {k: _attribute(k, v, {}) for k, v in sub.attributes.items()}
            logical = self.ids("Subscription", sub.topic_key, sub.queue_key)
            self.resources[logical] = {"Type": "AWS::SNS::Subscription", "Properties": props}

    def tables(self) -> None:
        for table in self.state.tables:
            logical = self.ids("Table", table.key)
            self.table_ids[table.key] = logical
            self.refs[table.arn] = _get_att(logical)
            self.resources[logical] = table_resource(table, _sub(table.name), _tags(table.tags))
            self.resources[logical] |= RETAIN

    def bucket(self) -> None:
        for bucket in self.state.buckets:
            logical = self.ids("Bucket", bucket.key)
            self.bucket_id = logical
            tags = _tags(bucket.tags)
            self.resources[logical] = bucket_resource(bucket, self.topology.project, tags)
            self.resources[logical] |= RETAIN
            self.resources[self.ids("BucketPolicy", bucket.key)] = bucket_policy_resource(logical)
            self.outputs["PayloadBucketName"] = {"Value": {"Ref": logical}}

    # -- IAM -----------------------------------------------------------------------------

    def api_role(self) -> None:
        topics = [{"Ref": self.topic_ids[key]} for key in self.topology.topics]
        statements: list[dict[str, Any]] = [
            {
                "Sid": "PublishJobs",
                "Effect": "Allow",
                "Action": list(API_TOPIC_ACTIONS),
                "Resource": topics,
            },
        ]
        statements += api_storage_statements(self.topology, self.table_ids, self.bucket_id)
        statements += api_timer_statements(self.table_ids)
        self.resources["ApiRole"] = _role(
            "Conveyor producer API: publish jobs to the topics, store large payloads,"
            " record and read job status, keep idempotency keys.",
            statements,
            "conveyor-api",
        )
        self.outputs["ApiRoleArn"] = {"Value": _get_att("ApiRole")}

    def topic_policies(self) -> None:
        """Per topic: the API role and the topic's listed publishers publish, nobody else."""
        for key, topic in self.topology.topics.items():
            self.resources[self.ids("TopicPolicy", key)] = topic_policy_resource(
                {"Ref": self.topic_ids[key]},
                _get_att("ApiRole"),
                list(topic.publishers),
                roles=[_get_att("SchedulerRole"), *self.console_publishes],
            )

    def scheduler(self) -> None:
        """The scheduler's role and its ECS service (the cluster must exist)."""
        statements = scheduler_statements(
            self.topology, self.topic_ids, self.table_ids, self.bucket_id
        )
        self.resources["SchedulerRole"] = _role(
            "Conveyor scheduler: publish delayed jobs when due, keep cron schedules' state.",
            statements,
            "conveyor-scheduler",
        )
        self.outputs["SchedulerRoleArn"] = {"Value": _get_att("SchedulerRole")}
        group = self.ids("SecurityGroup", "scheduler")
        tags = {TAG_PROJECT: self.topology.project, TAG_ENVIRONMENT: ENV_PLACEHOLDER}
        self.resources[group] = security_group_resource("scheduler", _tags(tags))
        task, service = scheduler_task(self.name("scheduler"), "SchedulerRole", "LogGroup", group)
        self.resources[self.ids("TaskDefinition", "scheduler")] = task
        self.resources[self.ids("Service", "scheduler")] = service

    def console(self, mode: ConsoleMode) -> None:
        """The console's role for ``mode`` and its ECS service (the cluster must exist)."""
        statements = console_statements(
            mode,
            queue_ids=self.queue_ids,
            dlq_ids=self.dlq_ids,
            table_ids=self.table_ids,
            service_ids=[self.ids("Service", pool) for pool in self.topology.pools],
            topic_ids=self.topic_ids,
            bucket_id=self.bucket_id,
            job_types=sorted(self.topology.job_types),
        )
        what = (
            "redrive and delete dead letters, cancel jobs, run schedules, scale pools"
            if mode == "operate"
            else "nothing more"
        )
        self.resources["ConsoleRole"] = _role(
            f"Conveyor web console ({mode}): read queues, DLQs, the ledger and pools; {what}.",
            statements,
            "conveyor-console",
        )
        self.outputs["ConsoleRoleArn"] = {"Value": _get_att("ConsoleRole")}
        group = self.ids("SecurityGroup", "console")
        tags = {TAG_PROJECT: self.topology.project, TAG_ENVIRONMENT: ENV_PLACEHOLDER}
        self.resources[group] = console_security_group(_tags(tags))
        task, service = console_task(self.name("console"), mode, "ConsoleRole", "LogGroup", group)
        self.resources[self.ids("TaskDefinition", "console")] = task
        self.resources[self.ids("Service", "console")] = service

    def worker_role(self, pool: str) -> str:
        queues = self.topology.pools[pool].queues
        statements: list[dict[str, Any]] = [
            {
                "Sid": "ConsumeQueues",
                "Effect": "Allow",
                "Action": list(WORKER_QUEUE_ACTIONS),
                "Resource": [_get_att(self.queue_ids[q]) for q in queues],
            },
            {
                "Sid": "DeadLetter",
                "Effect": "Allow",
                "Action": list(WORKER_DLQ_ACTIONS),
                "Resource": [_get_att(self.dlq_ids[q]) for q in queues],
            },
        ]
        statements += worker_storage_statements(
            self.topology, queues, self.table_ids, self.bucket_id
        )
        logical = self.ids("WorkerRole", pool)
        self.resources[logical] = _role(
            f"Conveyor worker pool {pool}: consume its queues, dead-letter to their DLQs.",
            statements,
            f"conveyor-worker-{pool}",
        )
        self.outputs[f"{logical}Arn"] = {"Value": _get_att(logical)}
        return logical

    # -- ECS, scaling, alarms ----------------------------------------------------------

    def cluster(self) -> None:
        self.resources["Cluster"] = {
            "Type": "AWS::ECS::Cluster",
            "Properties": {
                "ClusterName": self.name("workers"),
                # RunningTaskCount, the divisor of backlog per task, is a Container Insights metric.
                "ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}],
            },
        }
        self.resources["LogGroup"] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": _sub(f"/conveyor/{self.topology.project}-{ENV_PLACEHOLDER}"),
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
        # Pulls the image and writes logs: AWS's managed policy for exactly that.
        self.resources["TaskExecutionRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [ECS_TASKS_TRUST],
                },
                "ManagedPolicyArns": [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonECSTaskExecutionRolePolicy"
                    }
                ],
            },
        }
        self.outputs["ClusterName"] = {"Value": {"Ref": "Cluster"}}

    def pool_service(self, pool: str, role: str) -> None:
        spec = self.topology.pools[pool]
        health = (
            "import sys, urllib.request; sys.exit(urllib.request.urlopen("
            f"'http://{WORKER_HEALTH_HOST}:{WORKER_HEALTH_PORT}/healthz', timeout=3).status != 200)"
        )
        task = self.ids("TaskDefinition", pool)
        self.resources[task] = {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": self.name(pool),
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": WORKER_CPU,
                "Memory": WORKER_MEMORY,
                "TaskRoleArn": _get_att(role),
                "ExecutionRoleArn": _get_att("TaskExecutionRole"),
                "ContainerDefinitions": [
                    {
                        "Name": "worker",
                        "Image": {"Ref": "Image"},
                        "Essential": True,
                        "Command": [
                            "worker",
                            "--pool",
                            pool,
                            "--health-port",
                            str(WORKER_HEALTH_PORT),
                        ],
                        "Environment": [
                            {"Name": "CONVEYOR_ENVIRONMENT", "Value": {"Ref": "EnvironmentName"}},
                            {"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}},
                            {"Name": "CONVEYOR_WORKER_HEALTH_HOST", "Value": WORKER_HEALTH_HOST},
                        ],
                        "StopTimeout": WORKER_STOP_TIMEOUT_S,
                        "HealthCheck": health_check(health),
                        "LogConfiguration": awslogs({"Ref": "LogGroup"}, pool),
                    }
                ],
            },
        }
        group = self.ids("SecurityGroup", pool)
        tags = {TAG_PROJECT: self.topology.project, TAG_ENVIRONMENT: ENV_PLACEHOLDER}
        self.resources[group] = security_group_resource(pool, _tags(tags))
        service = self.ids("Service", pool)
        self.resources[service] = {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "ServiceName": self.name(pool),
                "Cluster": {"Ref": "Cluster"},
                "TaskDefinition": {"Ref": task},
                "LaunchType": "FARGATE",
                "DesiredCount": spec.replicas.min,
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "Subnets": {"Ref": "Subnets"},
                        "SecurityGroups": [_get_att(group, "GroupId")],
                        "AssignPublicIp": "DISABLED",
                    }
                },
            },
        }
        target = self.ids("ScalableTarget", pool)
        self.resources[target] = {
            "Type": "AWS::ApplicationAutoScaling::ScalableTarget",
            "Properties": {
                "ServiceNamespace": "ecs",
                "ScalableDimension": "ecs:service:DesiredCount",
                "ResourceId": {"Fn::Sub": f"service/${{Cluster}}/${{{service}.Name}}"},
                "MinCapacity": spec.replicas.min,
                "MaxCapacity": spec.replicas.max,
            },
        }
        self.resources[self.ids("ScalingPolicy", pool)] = {
            "Type": "AWS::ApplicationAutoScaling::ScalingPolicy",
            "Properties": {
                "PolicyName": self.name(f"{pool}-backlog-per-task"),
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": {"Ref": target},
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": backlog_target(spec),
                    # Application Auto Scaling counts cooldowns in whole seconds.
                    "ScaleOutCooldown": math.ceil(spec.autoscaling.scale_out_cooldown_s),
                    "ScaleInCooldown": math.ceil(spec.autoscaling.scale_in_cooldown_s),
                    "CustomizedMetricSpecification": {
                        "Metrics": self.backlog_metrics(spec.queues, service),
                    },
                },
            },
        }

    def backlog_metrics(self, queues: list[str], service: str) -> list[dict[str, Any]]:
        """Metric math: visible messages of the pool's queues ÷ running tasks of its service."""
        metrics: list[dict[str, Any]] = []
        for i, queue in enumerate(queues):
            metrics.append(
                {
                    "Id": f"visible{i}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "AWS/SQS",
                            "MetricName": "ApproximateNumberOfMessagesVisible",
                            "Dimensions": [
                                {
                                    "Name": "QueueName",
                                    "Value": _get_att(self.queue_ids[queue], "QueueName"),
                                }
                            ],
                        },
                        "Stat": "Sum",
                    },
                    "ReturnData": False,
                }
            )
        metrics.append(
            {
                "Id": "tasks",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "ECS/ContainerInsights",
                        "MetricName": "RunningTaskCount",
                        "Dimensions": [
                            {"Name": "ClusterName", "Value": {"Ref": "Cluster"}},
                            {"Name": "ServiceName", "Value": _get_att(service, "Name")},
                        ],
                    },
                    "Stat": "Average",
                },
                "ReturnData": False,
            }
        )
        backlog = " + ".join(f"visible{i}" for i in range(len(queues)))
        metrics.append(
            {
                "Id": "backlogPerTask",
                "Label": "Visible messages per running task",
                "Expression": f"({backlog}) / tasks",
                "ReturnData": True,
            }
        )
        return metrics

    def alarms(self) -> None:
        for key in self.topology.queues:
            for logical, metric, threshold, what in (
                (self.dlq_ids[key], "ApproximateNumberOfMessagesVisible", 0, "dlq-not-empty"),
                (
                    self.queue_ids[key],
                    "ApproximateAgeOfOldestMessage",
                    OLDEST_MESSAGE_ALARM_S,
                    "oldest-message",
                ),
            ):
                self.resources[self.ids("Alarm", key, what)] = {
                    "Type": "AWS::CloudWatch::Alarm",
                    "Properties": {
                        "AlarmName": self.name(f"{key}-{what}"),
                        "AlarmDescription": f"{metric} above {threshold} ({what}, queue {key})",
                        "Namespace": "AWS/SQS",
                        "MetricName": metric,
                        "Dimensions": [
                            {"Name": "QueueName", "Value": _get_att(logical, "QueueName")}
                        ],
                        "Statistic": "Maximum",
                        "Period": 60,
                        "EvaluationPeriods": 1,
                        "Threshold": threshold,
                        "ComparisonOperator": "GreaterThanThreshold",
                        "TreatMissingData": "notBreaching",
                    },
                }

    def job_metrics(self) -> None:
        """Alarms and a dashboard on the EMF job metrics (see infra.export.cfn_metrics)."""
        for key, alarm in job_metric_alarms(self.topology, self.name).items():
            self.resources[self.ids("Alarm", *key.split("/"))] = alarm
        queue_names = {q.key: q.name for q in self.state.queues}
        dlq_names = {q.key: q.name for q in self.state.dlqs}
        pairs = {k: (queue_names[k], dlq_names[k]) for k in self.topology.queues}
        self.resources["Dashboard"] = dashboard(self.topology, pairs)


def cloudformation_template(
    topology: Topology, *, console: ConsoleMode | None = None
) -> dict[str, Any]:
    """The CloudFormation template (as a JSON-ready dict) that deploys ``topology`` on AWS.

    ``console``: also the web console, read-only or allowed to act (see
    :mod:`infra.export.cfn_console`); None: no console.
    """
    b = _Builder(topology)
    b.topics()
    b.queues()
    b.subscriptions()
    b.tables()
    b.bucket()
    b.api_role()
    if console == "operate":
        b.console_publishes.append(_get_att("ConsoleRole"))
    b.topic_policies()
    b.cluster()  # the scheduler runs there, with or without pools
    for pool in topology.pools:
        b.pool_service(pool, b.worker_role(pool))
    b.scheduler()
    if console is not None:
        b.console(console)
    b.alarms()
    b.job_metrics()
    for logical in b.topic_ids.values():
        b.outputs[f"{logical}Arn"] = {"Value": {"Ref": logical}}
    for logical in b.queue_ids.values():
        b.outputs[f"{logical}Url"] = {"Value": {"Ref": logical}}
    parameters: dict[str, Any] = {
        "Image": {
            "Type": "String",
            "Description": "The Conveyor container image (ENTRYPOINT conveyor), e.g. an ECR URI.",
        },
        "EnvironmentName": {
            "Type": "String",
            "Default": topology.environment,
            "AllowedPattern": "^[a-z0-9][a-z0-9_-]{0,39}$",
            "Description": "Resource names are <project>-<EnvironmentName>-<name>.",
        },
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Subnets of the worker tasks (private, with a route to AWS APIs).",
        },
        "VpcId": {
            "Type": "AWS::EC2::VPC::Id",
            "Description": "The VPC of the Subnets: the worker tasks' security groups live in it.",
        },
    }
    if console is not None:
        parameters |= console_parameters()
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"Conveyor {topology.project}: topics, queues, DLQs, tables, payload bucket, IAM,"
            " topic and TLS policies, ECS workers, security groups, alarms"
            " (generated by `conveyor infra export cloudformation`; do not edit)."
        ),
        "Parameters": parameters,
        "Resources": b.resources,
        "Outputs": b.outputs,
    }
