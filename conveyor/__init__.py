"""Conveyor: a producer-consumer job system on Amazon SNS and SQS."""

__version__ = "0.1.0"
