"""The sample jobs of the repository's queues.yaml: payload models and handlers for the demo.

Not part of Conveyor's wheel: like any project's handlers, they are imported from
the directory of queues.yaml (docs/queues-yaml.md).
"""
