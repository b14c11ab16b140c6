"""AWS errors classified in one place (infra.aws.errors), as moto really answers them."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import ClientError

from infra import aws
from infra.aws.errors import (
    S3_MISSING_CODES,
    error_code,
    is_condition_failed,
    is_not_found,
    is_table_missing,
    is_unsupported_operation,
)
from infra.aws.lookup import queue_url_or_none
from infra.errors import ProvisionError
from infra.net import free_port
from infra.provision.apply import _Runner
from infra.provision.diff import DeleteQueue, TagQueue


def _raised(call: object, **kwargs: object) -> ClientError:
    with pytest.raises(ClientError) as info:
        call(**kwargs)  # type: ignore[operator]
    return info.value


def test_a_failed_dynamodb_condition_and_a_missing_table(mocked_aws: None) -> None:
    ddb = aws.client("dynamodb")
    missing = _raised(ddb.get_item, TableName="nope", Key={"pk": {"S": "a"}})
    assert is_table_missing(missing)
    assert is_not_found(missing)
    assert not is_condition_failed(missing)
    ddb.create_table(
        TableName="t",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"pk": {"S": "a"}}
    ddb.put_item(TableName="t", Item=item)
    refused = _raised(
        ddb.put_item, TableName="t", Item=item, ConditionExpression="attribute_not_exists(pk)"
    )
    assert is_condition_failed(refused)
    assert not is_table_missing(refused)


def test_a_missing_queue_and_a_missing_s3_object(mocked_aws: None) -> None:
    sqs = aws.client("sqs")
    assert queue_url_or_none(sqs, "nope") is None
    assert is_not_found(_raised(sqs.get_queue_url, QueueName="nope"))
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="conveyor-unit-payloads")
    assert (
        error_code(_raised(s3.get_object, Bucket="conveyor-unit-payloads", Key="k"))
        in S3_MISSING_CODES
    )


def test_an_endpoint_without_the_api_answers_unsupported() -> None:
    # moto 5.2.5 answers StartMessageMoveTask with a bare HTTP 500, code "500".
    bare = ClientError({"Error": {"Code": "500"}}, "StartMessageMoveTask")
    aws_own = ClientError({"Error": {"Code": "InternalError"}}, "StartMessageMoveTask")
    assert is_unsupported_operation(bare)
    assert not is_unsupported_operation(aws_own)


def test_provisioning_skips_deleting_a_gone_queue_and_names_it_when_tagging(
    mocked_aws: None,
) -> None:
    runner = _Runner({})
    runner.run(DeleteQueue(name="gone"))  # already deleted: nothing to do
    with pytest.raises(ProvisionError, match=r"^tagging queue gone: queue gone does not exist$"):
        runner.run(TagQueue(name="gone", tags={"a": "b"}))
    url = aws.client("sqs").create_queue(QueueName="here")["QueueUrl"]
    runner.run(TagQueue(name="here", tags={"a": "b"}))  # looked up, then tagged
    assert aws.client("sqs").list_queue_tags(QueueUrl=url)["Tags"] == {"a": "b"}
    runner.run(DeleteQueue(name="here"))
    assert queue_url_or_none(aws.client("sqs"), "here") is None


def test_free_port_is_a_loopback_port_nobody_holds() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # would raise if someone held it
        assert sock.getsockname()[1] == port
