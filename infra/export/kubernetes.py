"""Kubernetes manifests of queues.yaml: worker Deployments scaled by KEDA, the producer API.

:func:`kubernetes_manifests` is pure and returns one dict per manifest:

- a ConfigMap ``conveyor`` (environment name, region) every pod reads;
- per pool: a ServiceAccount, a Deployment running ``conveyor worker --pool P``
  (liveness on ``/healthz``), and a KEDA ``ScaledObject`` with one
  ``aws-sqs-queue`` trigger per queue, its ``queueLength`` the pool's backlog
  target per worker;
- a ``TriggerAuthentication`` (KEDA's pod identity, provider ``aws``);
- the API: a ServiceAccount, a Deployment (readiness ``/readyz``, liveness
  ``/healthz``; its API keys from the Secret ``conveyor-api-keys``, created by hand:
  ``kubectl create secret generic conveyor-api-keys --from-file=keys.yaml``) and a
  ClusterIP Service;
- the scheduler (``conveyor scheduler``: delayed jobs, cron schedules): a
  ServiceAccount and a Deployment of two replicas (liveness ``/healthz``; any number
  may run, each due job is claimed before it is published);
- when asked (``console``), the web console (``conveyor console``): a ServiceAccount,
  a Deployment of one replica (``--read-only`` unless the mode is ``operate``; who
  may log in is the API's keys Secret, keys with the ``viewer`` or ``operator``
  scope), a ClusterIP Service, and a Role with its RoleBinding: read the worker
  Deployments and their pods, and, in ``operate`` mode only, patch their scale;
- when asked (``prometheus_rule``), a ``PrometheusRule`` (Prometheus Operator) with
  the CloudFormation export's job alerts: dead-letter rate and queue lag per queue
  (:mod:`infra.export.k8s_alerts`).

AWS credentials come from the pods' identity (EKS Pod Identity or IRSA bound to
the ServiceAccounts; the CloudFormation export's roles trust EKS Pod Identity),
or from an optional Secret ``conveyor-aws`` that is not generated here.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from infra.export.cfn_console import CONSOLE_PORT, ConsoleMode
from infra.export.k8s_alerts import prometheus_rule as job_alerts
from infra.export.names import backlog_target
from infra.topology import Topology

API_PORT = 8000
WORKER_HEALTH_PORT = 8001
SCHEDULER_HEALTH_PORT = 8002
#: Two: one may be rescheduled while the other publishes.
SCHEDULER_REPLICAS = 2
#: The image's non-root user (see the Dockerfile).
RUN_AS_USER = 10001
#: Seconds a worker has to finish the jobs in hand after SIGTERM.
TERMINATION_GRACE_S = 120
CONFIG_MAP = "conveyor"
AWS_SECRET = "conveyor-aws"  # noqa: S105 - the name of an optional Secret
#: The Secret holding the API's keys document (sha256 hashes only, see producers/auth.py):
#: the API refuses to start without keys outside the embedded emulator.
API_KEYS_SECRET = "conveyor-api-keys"  # noqa: S105 - a Secret's name, not a secret
API_KEYS_SECRET_KEY = "keys.yaml"  # noqa: S105 - the file name inside that Secret
TRIGGER_AUTH = "conveyor-aws"
#: Stands in for the account id in queue URLs when none is given.
ACCOUNT_PLACEHOLDER = "${AWS_ACCOUNT_ID}"
#: The longest stabilization window a HorizontalPodAutoscaler accepts.
HPA_MAX_WINDOW_S = 3600


def k8s_name(*parts: str) -> str:
    """A DNS-1123 name: lower case, ``-`` for anything else, at most 63 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-")


def queue_url(topology: Topology, queue: str, *, account: str, region: str) -> str:
    """The SQS URL of ``queue`` in ``account``/``region``."""
    return f"https://sqs.{region}.amazonaws.com/{account}/{topology.queue_name(queue)}"


def _labels(topology: Topology, component: str, **extra: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "conveyor",
        "app.kubernetes.io/instance": k8s_name(topology.project, topology.environment),
        "app.kubernetes.io/component": component,
        **extra,
    }


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _env_from() -> list[dict[str, Any]]:
    return [
        {"configMapRef": {"name": CONFIG_MAP}},
        {"secretRef": {"name": AWS_SECRET, "optional": True}},
    ]


def _deployment(
    name: str,
    labels: dict[str, str],
    replicas: int,
    container: dict[str, Any],
    *,
    grace_s: int = 30,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": name,
                    "terminationGracePeriodSeconds": grace_s,
                    "containers": [container],
                },
            },
        },
    }


def _service_account(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "labels": labels},
    }


def _probe(path: str, port: str, period_s: int = 10) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s, "timeoutSeconds": 3}


def kubernetes_manifests(
    topology: Topology,
    *,
    image: str = "conveyor:latest",
    region: str = "us-east-1",
    account: str = ACCOUNT_PLACEHOLDER,
    prometheus_rule: bool = False,
    console: ConsoleMode | None = None,
) -> list[dict[str, Any]]:
    """Every manifest that runs ``topology``'s API and worker pools on Kubernetes with KEDA.

    ``console``: also the web console, read-only or allowed to act (None: none).

    ``prometheus_rule``: add the job alerts' ``PrometheusRule`` (opt-in: a cluster
    without the Prometheus Operator's CRDs would refuse it, and ``kubectl apply`` fail).
    """
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": CONFIG_MAP, "labels": _labels(topology, "config")},
            "data": {
                "CONVEYOR_ENVIRONMENT": topology.environment,
                "AWS_REGION": region,
                "CONVEYOR_LOG_FORMAT": "json",
            },
        },
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "TriggerAuthentication",
            "metadata": {"name": TRIGGER_AUTH, "labels": _labels(topology, "autoscaling")},
            "spec": {"podIdentity": {"provider": "aws"}},
        },
    ]

    api_name = k8s_name(topology.project, "api")
    api_labels = _labels(topology, "api")
    manifests.append(_service_account(api_name, api_labels))
    api_container = {
        "name": "api",
        "image": image,
        "args": ["api", "--host", "0.0.0.0", "--port", str(API_PORT)],  # noqa: S104 - in a pod
        "ports": [{"name": "http", "containerPort": API_PORT}],
        "envFrom": _env_from(),
        # Not optional: without keys the API would refuse every request, so a missing
        # Secret should stop the pod from starting, where kubectl shows why.
        "env": [
            {
                "name": "CONVEYOR_API_KEYS",
                "valueFrom": {
                    "secretKeyRef": {"name": API_KEYS_SECRET, "key": API_KEYS_SECRET_KEY}
                },
            }
        ],
        "readinessProbe": _probe("/readyz", "http"),
        "livenessProbe": _probe("/healthz", "http", 20),
        "securityContext": _security_context(),
    }
    manifests.append(_deployment(api_name, api_labels, 1, api_container))
    manifests.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": api_name, "labels": api_labels},
            "spec": {
                "type": "ClusterIP",
                "selector": api_labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        }
    )

    for pool, spec in topology.pools.items():
        name = k8s_name(topology.project, "worker", pool)
        labels = _labels(topology, "worker", **{"conveyor.io/pool": k8s_name(pool)})
        container = {
            "name": "worker",
            "image": image,
            "args": ["worker", "--pool", pool, "--health-port", str(WORKER_HEALTH_PORT)],
            "ports": [{"name": "health", "containerPort": WORKER_HEALTH_PORT}],
            "envFrom": _env_from(),
            # The kubelet probes the pod IP: /healthz must listen beyond loopback.
            "env": [{"name": "CONVEYOR_WORKER_HEALTH_HOST", "value": "0.0.0.0"}],  # noqa: S104
            "livenessProbe": _probe("/healthz", "health", 20),
            "securityContext": _security_context(),
        }
        manifests.append(_service_account(name, labels))
        manifests.append(
            _deployment(name, labels, spec.replicas.min, container, grace_s=TERMINATION_GRACE_S)
        )
        manifests.append(
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "scaleTargetRef": {"name": name},
                    "minReplicaCount": spec.replicas.min,
                    "maxReplicaCount": spec.replicas.max,
                    # The pool's autoscale timings: KEDA polls the queues every interval;
                    # the HPA scales in only after the cooldown (its stabilization
                    # window, at most an hour), and KEDA waits as long before zero.
                    "pollingInterval": max(1, math.ceil(spec.autoscaling.interval_s)),
                    "cooldownPeriod": math.ceil(spec.autoscaling.scale_in_cooldown_s),
                    "advanced": {
                        "horizontalPodAutoscalerConfig": {
                            "behavior": {
                                "scaleDown": {
                                    "stabilizationWindowSeconds": min(
                                        HPA_MAX_WINDOW_S,
                                        math.ceil(spec.autoscaling.scale_in_cooldown_s),
                                    )
                                }
                            }
                        }
                    },
                    "triggers": [
                        {
                            "type": "aws-sqs-queue",
                            "metadata": {
                                "queueURL": queue_url(
                                    topology, queue, account=account, region=region
                                ),
                                # KEDA counts visible + in-flight messages (scaleOnInFlight).
                                "queueLength": str(backlog_target(spec)),
                                "awsRegion": region,
                            },
                            "authenticationRef": {"name": TRIGGER_AUTH},
                        }
                        for queue in spec.queues
                    ],
                },
            }
        )
    manifests += _scheduler(topology, image)
    if console is not None:
        manifests += _console(topology, image, console)
    if prometheus_rule:
        name = k8s_name(topology.project, "alerts")
        manifests.append(job_alerts(topology, name, _labels(topology, "alerts")))
    # Parts are shared between manifests (labels, probes, the security context); a YAML
    # dumper writes shared objects as anchors and aliases (&id001), which reviewers trip
    # on. Independent copies make every dump plain.
    fresh: list[dict[str, Any]] = json.loads(json.dumps(manifests))
    return fresh


def _scheduler(topology: Topology, image: str) -> list[dict[str, Any]]:
    """The scheduler's ServiceAccount and Deployment."""
    name = k8s_name(topology.project, "scheduler")
    labels = _labels(topology, "scheduler")
    container = {
        "name": "scheduler",
        "image": image,
        "args": ["scheduler", "--health-port", str(SCHEDULER_HEALTH_PORT)],
        "ports": [{"name": "health", "containerPort": SCHEDULER_HEALTH_PORT}],
        "envFrom": _env_from(),
        # The kubelet probes the pod IP: /healthz must listen beyond loopback.
        "env": [{"name": "CONVEYOR_SCHEDULING_HEALTH_HOST", "value": "0.0.0.0"}],  # noqa: S104
        "livenessProbe": _probe("/healthz", "health", 20),
        "securityContext": _security_context(),
    }
    return [
        _service_account(name, labels),
        _deployment(name, labels, SCHEDULER_REPLICAS, container),
    ]


def _console(topology: Topology, image: str, mode: ConsoleMode) -> list[dict[str, Any]]:
    """The console's ServiceAccount, Role and RoleBinding, Deployment and Service."""
    name = k8s_name(topology.project, "console")
    labels = _labels(topology, "console")
    args = ["console", "--host", "0.0.0.0", "--port", str(CONSOLE_PORT)]  # noqa: S104 - in a pod
    if mode == "read-only":
        args.append("--read-only")
    container = {
        "name": "console",
        "image": image,
        "args": args,
        "ports": [{"name": "http", "containerPort": CONSOLE_PORT}],
        "envFrom": _env_from(),
        "env": [
            # Who may log in: the API's keys document (keys with scope viewer or operator).
            {
                "name": "CONVEYOR_API_KEYS",
                "valueFrom": {
                    "secretKeyRef": {"name": API_KEYS_SECRET, "key": API_KEYS_SECRET_KEY}
                },
            },
            # Pools are the worker Deployments of this namespace.
            {"name": "CONVEYOR_SCALING_BACKEND", "value": "kubernetes"},
        ],
        "readinessProbe": _probe("/healthz", "http"),
        "livenessProbe": _probe("/healthz", "http", 20),
        "securityContext": _security_context(),
    }
    workers = [k8s_name(topology.project, "worker", pool) for pool in topology.pools]
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "resourceNames": workers,
            "verbs": ["get"],
        },
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    ]
    if mode == "operate":
        rules.append(
            {
                "apiGroups": ["apps"],
                "resources": ["deployments/scale"],
                "resourceNames": workers,
                "verbs": ["patch"],
            }
        )
    return [
        _service_account(name, labels),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": name, "labels": labels},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name}],
        },
        _deployment(name, labels, 1, container),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    ]


def manifest_filename(index: int, manifest: dict[str, Any]) -> str:
    """``03-deployment-conveyor-api.yaml``: ordered, and unique within one export."""
    kind = str(manifest["kind"]).lower()
    return f"{index:02d}-{kind}-{manifest['metadata']['name']}.yaml"
