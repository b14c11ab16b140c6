"""Infrastructure as code generated from queues.yaml: CloudFormation and Kubernetes/KEDA.

Pure functions of a :class:`~infra.topology.Topology`; nothing here calls AWS.
The CLI (``conveyor infra export …``) writes what they return.
"""

from infra.export.cloudformation import cloudformation_template
from infra.export.kubernetes import kubernetes_manifests

__all__ = ["cloudformation_template", "kubernetes_manifests"]
