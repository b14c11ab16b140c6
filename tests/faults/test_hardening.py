"""Hardening checks on the running system.

* No payload and no secret (API key, AWS secret access key) in the API's or the
  workers' logs at the default (info) level, on the success path and on the
  failure paths that are most tempted to print the input (a 422 at the API, a payload
  that fails validation on a worker).
* SSE on every provisioned queue, DLQs included.

Covered elsewhere, not repeated here: destructive CLI operations ask for confirmation
(tests/unit/test_dlq.py, tests/e2e/test_dlq.py for `conveyor dlq delete/purge`;
tests/unit/test_cli.py for `conveyor infra destroy`); API keys required by default
outside embedded mode, compared in constant time (the producer API's own tests).
"""

from __future__ import annotations

import hashlib
import json
import secrets

import httpx

from infra import aws
from tests.faults.harness import Cluster
from tests.support.polling import eventually


def test_no_payload_and_no_secret_reaches_the_logs(cluster: Cluster) -> None:
    marker = f"PAYLOAD-{secrets.token_hex(8)}"
    api_key = f"cvy_{secrets.token_urlsafe(32)}"
    aws_secret = f"AWSSECRET{secrets.token_hex(12)}"  # moto does not check signatures
    keys = {"keys": [{"name": "faults", "sha256": hashlib.sha256(api_key.encode()).hexdigest()}]}
    env = {
        **cluster.env,
        "AWS_SECRET_ACCESS_KEY": aws_secret,
        "CONVEYOR_API_KEYS": json.dumps(keys),
        "CONVEYOR_LOG_LEVEL": "INFO",
    }
    env.pop("CONVEYOR_API_AUTH", None)  # the default: keys required
    cluster.env = env
    node = cluster.node("a", wait=False)
    _, url = cluster.api()
    cluster.wait_ready([node])
    headers = {"Authorization": f"Bearer {api_key}"}

    ok = httpx.post(f"{url}/v1/jobs/fault.note", json={"label": marker}, headers=headers)
    assert ok.status_code == 202, ok.text
    refused = httpx.post(
        f"{url}/v1/jobs/fault.note", json={"label": {"nested": marker}}, headers=headers
    )
    assert refused.status_code == 422, refused.text
    wrong_key = httpx.post(
        f"{url}/v1/jobs/fault.note", json={"label": marker}, headers={"X-API-Key": marker}
    )
    assert wrong_key.status_code == 401, wrong_key.text
    # A payload that fails the model on the worker (sent around the API, straight to SQS).
    bad = json.dumps(
        {
            "specversion": "1.0",
            "id": f"bad-{secrets.token_hex(8)}",
            "type": "fault.note",
            "source": "/faults",
            "time": "2026-01-01T00:00:00Z",
            "data": {"label": [marker, 42]},
        }
    )
    aws.client("sqs").send_message(QueueUrl=cluster.url("alpha"), MessageBody=bad)

    job_id = ok.json()["id"]
    eventually(lambda: cluster.ok_runs(job_id), what="the job to run")
    eventually(
        lambda: '"job.dead_lettered"' in node.text() or '"job.failed"' in node.text(),
        what="the bad payload to be dead-lettered",
    )
    logs = {p.name: p.text() for p in cluster.procs}
    assert all(logs.values())
    for name, text in logs.items():
        for what, secret in (("payload", marker), ("API key", api_key), ("AWS secret", aws_secret)):
            lines = [line for line in text.splitlines() if secret in line]
            assert not lines, f"{what} in the {name} log: {lines[:3]}"
    # The logs do say what happened, by id.
    assert job_id in logs["api"]
    assert job_id in logs[node.name]


def test_every_provisioned_queue_has_server_side_encryption(cluster: Cluster) -> None:
    sqs = aws.client("sqs")
    prefix = f"{cluster.topology.project}-{cluster.topology.environment}-"
    urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    expected = {cluster.topology.queue_name(q) for q in cluster.topology.queues}
    expected |= {cluster.topology.dlq_name(q) for q in cluster.topology.queues}
    assert {u.rsplit("/", 1)[-1] for u in urls} == expected
    for url in urls:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        encrypted = attrs.get("SqsManagedSseEnabled") == "true" or "KmsMasterKeyId" in attrs
        assert encrypted, (url, attrs)
