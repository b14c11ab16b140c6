"""Side-by-side benchmark: vanilla Celery on SQS, a raw boto3 batched loop, and Conveyor.

``python -m benchmarks`` (or ``make bench``) runs all three on one embedded emulator
and prints one JSON document and a short table; see :mod:`benchmarks.run`.
"""
