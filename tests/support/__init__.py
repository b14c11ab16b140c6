"""What the tests share, one definition each.

* :mod:`tests.support.polling` — wait for a condition with a deadline (never a fixed sleep);
* :mod:`tests.support.emulator` — point this process (and the processes it starts) at a
  moto server under a fresh environment name; the emulator fixtures are built on it;
* :mod:`tests.support.processes` — ``python -m conveyor …`` child processes, ready when
  their ``/healthz`` says so, stopped by their own process group;
* :mod:`tests.support.queues` — queue URLs and depths (production's
  :func:`infra.aws.lookup.queue_depth`), receiving, seeding a DLQ;
* :mod:`tests.support.outbox` — what the test handlers (tests/jobs.py …) recorded;
* :mod:`tests.support.http` — one reused HTTP client for polling endpoints;
* :mod:`tests.support.scenarios` — the fault scenarios' sizes and summary lines;
* :mod:`tests.support.mocked` — moto in this process, for unit tests only.

Free loopback ports come from production's :func:`infra.net.free_port`.

The handler modules the test topologies name (``tests.jobs:…``, ``tests.dlq_jobs:…``,
``tests.storage_jobs:…`` in tests/fixtures/*.yaml) stay beside them: worker processes
import them by those paths.
"""
