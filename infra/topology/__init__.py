"""queues.yaml: the single source of truth for topics, queues, job types and pools."""

from infra.topology.errors import Problem, TopologyError
from infra.topology.imports import check_imports, import_object, payload_model
from infra.topology.load import load_topology, parse_topology, use_project_dir
from infra.topology.model import (
    Backoff,
    JobType,
    Pool,
    Queue,
    RetryPolicy,
    Schedule,
    Subscription,
    Topic,
    Topology,
)

__all__ = [
    "Backoff",
    "JobType",
    "Pool",
    "Problem",
    "Queue",
    "RetryPolicy",
    "Schedule",
    "Subscription",
    "Topic",
    "Topology",
    "TopologyError",
    "check_imports",
    "import_object",
    "load_topology",
    "parse_topology",
    "payload_model",
    "use_project_dir",
]
