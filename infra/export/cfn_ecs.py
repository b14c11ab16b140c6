"""Pieces every ECS container definition of the CloudFormation export shares."""

from __future__ import annotations

from typing import Any


def health_check(script: str) -> dict[str, Any]:
    """A container health check running ``python -c script`` (exit 0: healthy)."""
    return {
        "Command": ["CMD", "python", "-c", script],
        "Interval": 30,
        "Timeout": 5,
        "Retries": 3,
        "StartPeriod": 30,
    }


def awslogs(log_group: dict[str, Any], stream_prefix: Any) -> dict[str, Any]:
    """The container's logs in CloudWatch Logs ``log_group`` under ``stream_prefix``."""
    return {
        "LogDriver": "awslogs",
        "Options": {
            "awslogs-group": log_group,
            "awslogs-region": {"Ref": "AWS::Region"},
            "awslogs-stream-prefix": stream_prefix,
        },
    }


def fargate_service(
    name: Any, task_definition: str, desired_count: int, security_group: str
) -> dict[str, Any]:
    """A Fargate service of ``task_definition`` in the stack's private subnets."""
    return {
        "Type": "AWS::ECS::Service",
        "Properties": {
            "ServiceName": name,
            "Cluster": {"Ref": "Cluster"},
            "TaskDefinition": {"Ref": task_definition},
            "LaunchType": "FARGATE",
            "DesiredCount": desired_count,
            "NetworkConfiguration": {
                "AwsvpcConfiguration": {
                    "Subnets": {"Ref": "Subnets"},
                    "SecurityGroups": [{"Fn::GetAtt": [security_group, "GroupId"]}],
                    "AssignPublicIp": "DISABLED",
                }
            },
        },
    }
