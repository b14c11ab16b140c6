"""The ``kubernetes`` backend: a pool is a Deployment; its desired replicas are ``spec.replicas``.

Names follow the Kubernetes export: Deployment ``<project>-worker-<pool>``, pods
labelled ``conveyor.io/pool=<pool>`` and ``app.kubernetes.io/instance=<project>-<environment>``.
The cluster comes from the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``; context
``CONVEYOR_K8S_CONTEXT``), or from the pod's service account inside a cluster; the
namespace from ``CONVEYOR_K8S_NAMESPACE``, else the context's, else ``default``.
Replicas are changed through the Deployment's ``scale`` subresource, as
``kubectl scale`` does. A Deployment that KEDA scales (the export's ScaledObject)
is moved back within its bounds by KEDA at its next poll.

Uses the official client (``pip install 'conveyor[kubernetes]'``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from infra.export.kubernetes import k8s_name
from infra.settings import (
    ScalingSettings,
    in_kubernetes_cluster,
    kubeconfig_path,
    load_settings,
)
from infra.topology import Topology
from ops.scaling.errors import ScalingError
from ops.scaling.model import NodeInfo, PoolState

NAMESPACE_ENV = ScalingSettings.env_name("k8s_namespace")
CONTEXT_ENV = ScalingSettings.env_name("k8s_context")
NO_CLUSTER = (
    "no Kubernetes cluster is configured: set KUBECONFIG (or write ~/.kube/config),"
    f" choose a context with {CONTEXT_ENV}, or run inside a cluster"
)
#: Seconds to wait for the API server (connect, read): a CLI must not hang.
REQUEST_TIMEOUT_S = (5, 30)


class _NotFoundError(ScalingError):
    """The API answered 404."""


def _client_modules() -> Any:
    try:
        import kubernetes  # type: ignore[import-untyped]  # noqa: PLC0415 - no type hints shipped
    except ImportError:
        raise ScalingError(
            "the kubernetes backend needs the Kubernetes client: pip install 'conveyor[kubernetes]'"
        ) from None
    return kubernetes


def _kubeconfig_path() -> str:
    # The client reads KUBECONFIG once, at import: read it now, as kubectl would.
    return kubeconfig_path()


def connect(context: str | None = None) -> tuple[Any, str]:
    """An ``ApiClient`` for the configured cluster and its default namespace; ScalingError."""
    kubernetes = _client_modules()
    config = kubernetes.config
    scaling = load_settings().scaling
    context = context or scaling.k8s_context
    configuration = kubernetes.client.Configuration()
    try:
        config.load_kube_config(
            config_file=_kubeconfig_path(), context=context, client_configuration=configuration
        )
        contexts, active = config.list_kube_config_contexts(config_file=_kubeconfig_path())
        if context is not None:
            active = next((c for c in contexts if c.get("name") == context), active)
        namespace = (active or {}).get("context", {}).get("namespace") or "default"
    except (config.ConfigException, FileNotFoundError) as exc:
        if not in_kubernetes_cluster():
            if context is not None:
                raise ScalingError(f"kubeconfig context '{context}': {exc}", usage=True) from None
            raise ScalingError(NO_CLUSTER, usage=True) from None
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as inner:
            raise ScalingError(f"{NO_CLUSTER} ({inner})", usage=True) from None
        try:
            with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
                namespace = fh.read().strip() or "default"
        except OSError:
            namespace = "default"
    # A CLI must fail, not retry, when the API server is unreachable (set before the
    # ApiClient builds its connection pool, which reads it).
    configuration.retries = 0
    return kubernetes.client.ApiClient(configuration), scaling.k8s_namespace or namespace


class KubernetesBackend:
    """Pools as worker Deployments in one namespace."""

    name = "kubernetes"

    def __init__(
        self, topology: Topology, *, namespace: str | None = None, context: str | None = None
    ) -> None:
        self.topology = topology
        self._kubernetes = _client_modules()
        api, default_namespace = connect(context)
        self.namespace = namespace or default_namespace
        self.host = str(api.configuration.host)
        self.apps = self._kubernetes.client.AppsV1Api(api)
        self.core = self._kubernetes.client.CoreV1Api(api)

    def deployment_name(self, pool: str) -> str:
        """The Deployment of ``pool``, as the Kubernetes export names it."""
        return k8s_name(self.topology.project, "worker", pool)

    def _selector(self, pool: str) -> str:
        instance = k8s_name(self.topology.project, self.topology.environment)
        return f"conveyor.io/pool={k8s_name(pool)},app.kubernetes.io/instance={instance}"

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        api_exception = self._kubernetes.client.exceptions.ApiException
        try:
            yield
        except api_exception as exc:
            error = _NotFoundError if exc.status == 404 else ScalingError
            raise error(f"{doing}: {exc.status} {exc.reason}".rstrip()) from None
        except Exception as exc:  # urllib3's connection errors have no common base worth naming
            if isinstance(exc, ScalingError):
                raise
            raise ScalingError(
                f"{doing}: cannot reach the Kubernetes API at {self.host} ({type(exc).__name__})"
            ) from None

    def pools(self, pools: list[str] | None = None) -> dict[str, PoolState]:
        """Each pool's Deployment replicas (desired, ready) and its pods."""
        found: dict[str, PoolState] = {}
        for pool in pools or list(self.topology.pools):
            name = self.deployment_name(pool)
            where = f"Deployment {name} in namespace {self.namespace}"
            try:
                with self._errors(f"reading {where}"):
                    deployment = self.apps.read_namespaced_deployment(
                        name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S
                    )
            except _NotFoundError:
                found[pool] = PoolState(pool, desired=0, running=0, note=f"no {where}")
                continue
            with self._errors(f"listing the pods of {name}"):
                pods = self.core.list_namespaced_pod(
                    self.namespace,
                    label_selector=self._selector(pool),
                    _request_timeout=REQUEST_TIMEOUT_S,
                )
            found[pool] = PoolState(
                pool,
                desired=int(deployment.spec.replicas or 0),
                running=int(deployment.status.ready_replicas or 0),
                nodes=[_node(p) for p in pods.items],
            )
        return found

    def set_desired(self, desired: Mapping[str, int]) -> None:
        """PATCH the scale subresource of each pool's Deployment (``kubectl scale``)."""
        for pool, count in desired.items():
            name = self.deployment_name(pool)
            with self._errors(f"scaling Deployment {name} in namespace {self.namespace}"):
                self.apps.patch_namespaced_deployment_scale(
                    name,
                    self.namespace,
                    {"spec": {"replicas": count}},
                    _request_timeout=REQUEST_TIMEOUT_S,
                )


def _node(pod: Any) -> NodeInfo:
    started = pod.status.start_time if pod.status else None
    deleting = pod.metadata.deletion_timestamp is not None
    phase = str(pod.status.phase if pod.status else "unknown").lower()
    return NodeInfo(
        id=str(pod.metadata.name),
        state="draining" if deleting else phase,
        host=pod.spec.node_name if pod.spec else None,
        started_at=started.timestamp() if started is not None else None,
    )
