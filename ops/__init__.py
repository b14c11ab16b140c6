"""What operators use: dead-letter queue operations and scaling (supervisor, autoscaler, backends,
status). Built on :mod:`infra` only; the CLI composes it. Never imported by the runtime.
"""
