"""CloudFormation resources that narrow who may reach Conveyor's resources, and how.

Used by :mod:`infra.export.cloudformation`:

- a topic policy per topic: only the producer API's role and the principals the
  topic lists in ``queues.yaml`` (``topics.<name>.publishers``) may ``sns:Publish``
  — an Allow for them and a Deny for every other principal, since SNS's default
  policy lets any principal of the account publish;
- ``aws:SecureTransport`` Deny statements on topics and the payload bucket (the queue
  policies get theirs from :func:`infra.provision.desired.queue_policy`, so that
  ``infra apply`` sets them too);
- ``DeletionPolicy``/``UpdateReplacePolicy: Retain`` for what holds data nobody can
  re-create: DLQs, DynamoDB tables, the payload bucket;
- a security group per ECS service: no ingress (health checks run inside the
  container), egress HTTPS only (the AWS APIs).

The provisioner creates no topic policy: it creates no IAM role, so it has no API
role to name; ``infra apply`` leaves SNS's default policy on topics it creates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from infra.provision.desired import deny_insecure_transport

#: Keep the resource (and its data) when the stack is deleted or the resource replaced.
RETAIN: dict[str, str] = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"}
PUBLISH_SID = "ConveyorPublishers"
OTHERS_SID = "ConveyorNoOtherPublishers"
#: Workers reach SQS, SNS, DynamoDB, S3, ECR and CloudWatch Logs over HTTPS only.
HTTPS_PORT = 443


def _accounts_of_roots(publishers: list[str]) -> list[str]:
    """The account ids of ``arn:…:iam::<account>:root`` entries (a whole account publishes)."""
    return sorted(arn.split(":")[4] for arn in publishers if arn.endswith(":root"))


def topic_policy_resource(
    topic: Any, api_role_arn: Any, publishers: list[str], *, roles: Sequence[Any] = ()
) -> dict[str, Any]:
    """``AWS::SNS::TopicPolicy``: only the API role, ``roles`` (the scheduler's) and
    ``publishers`` publish, over TLS."""
    principals = [api_role_arn, *roles, *publishers]
    named = [api_role_arn, *roles, *(arn for arn in publishers if not arn.endswith(":root"))]
    # Everyone else is denied: the Allow alone would not stop a principal of the account
    # whose own IAM policy allows sns:Publish. aws:PrincipalArn is the role for a session.
    others: dict[str, Any] = {"ArnNotEquals": {"aws:PrincipalArn": named}}
    accounts = _accounts_of_roots(publishers)
    if accounts:
        # The conditions are ANDed: a principal of a listed account is not "other".
        others["StringNotEquals"] = {"aws:PrincipalAccount": accounts}
    statements = [
        {
            "Sid": PUBLISH_SID,
            "Effect": "Allow",
            "Principal": {"AWS": principals},
            "Action": "sns:Publish",
            "Resource": topic,
        },
        {
            "Sid": OTHERS_SID,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "sns:Publish",
            "Resource": topic,
            "Condition": others,
        },
        deny_insecure_transport("sns:*", topic),
    ]
    return {
        "Type": "AWS::SNS::TopicPolicy",
        "Properties": {
            "Topics": [topic],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def bucket_policy_resource(bucket_id: str) -> dict[str, Any]:
    """``AWS::S3::BucketPolicy``: the bucket and its objects over TLS only."""
    resources = [{"Fn::GetAtt": [bucket_id, "Arn"]}, {"Fn::Sub": f"${{{bucket_id}.Arn}}/*"}]
    return {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [deny_insecure_transport("s3:*", resources)],
            },
        },
    }


def security_group_resource(pool: str, tags: list[dict[str, Any]]) -> dict[str, Any]:
    """``AWS::EC2::SecurityGroup`` of a pool's tasks: no ingress, HTTPS out."""
    return {
        "Type": "AWS::EC2::SecurityGroup",
        "Properties": {
            "GroupDescription": f"Conveyor worker pool {pool}: no ingress, HTTPS to AWS APIs",
            "VpcId": {"Ref": "VpcId"},
            # No SecurityGroupIngress: nothing connects to a worker.
            "SecurityGroupEgress": [
                {
                    "Description": "HTTPS to the AWS APIs (SQS, SNS, DynamoDB, S3, ECR, Logs)",
                    "IpProtocol": "tcp",
                    "FromPort": HTTPS_PORT,
                    "ToPort": HTTPS_PORT,
                    "CidrIp": "0.0.0.0/0",
                }
            ],
            "Tags": tags,
        },
    }
