"""The sample jobs that queues.yaml ships with: payload models and handlers for the demo."""
