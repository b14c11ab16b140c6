"""HTTP from the tests to the processes they started: one client, reused.

``httpx.get`` builds a client, with its SSL context, for every call: about 35 ms of
CPU, which a probe every 0.1 s turns into a third of a core. Tests that poll an
endpoint use :data:`CLIENT` (loopback only, so no proxy from the environment).
"""

from __future__ import annotations

import httpx

#: Shared by every poll of a test process; connections are kept alive between polls.
CLIENT = httpx.Client(timeout=30.0, trust_env=False)


def get(url: str, *, timeout_s: float = 30.0) -> httpx.Response:
    """GET ``url`` with the shared client."""
    return CLIENT.get(url, timeout=timeout_s)
