"""``conveyor check`` and worker start-up reject a handler that does not fit its pool.

An ``async def`` handler on a prefork/threads/solo pool would return a coroutine
nobody runs; a plain handler on an asyncio pool would block its event loop. Both
are one line naming the file, the pool's ``worker_pool`` key, the job type, the
queue and the handler's own key (tests/fixtures/pools.yaml is the sound version).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conveyor.cli import app
from infra.topology import TopologyError, check_imports, load_topology
from infra.topology.imports import is_async_handler
from tests import REPO, async_jobs, jobs

runner = CliRunner()
SOUND = REPO / "tests" / "fixtures" / "pools.yaml"


def swapped(tmp_path: Path, old: str, new: str) -> Path:
    path = tmp_path / "queues.yaml"
    text = SOUND.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_the_sound_topology_passes() -> None:
    check_imports(load_topology(SOUND), handlers=True)
    result = runner.invoke(app, ["check"], env={"CONVEYOR_QUEUES_FILE": str(SOUND)})
    assert result.exit_code == 0, result.output


def test_swapped_pool_kinds_are_one_line_per_handler_naming_the_keys(tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(
        SOUND.read_text()
        .replace("worker_pool: asyncio", "worker_pool: solo")
        .replace("worker_pool: threads", "worker_pool: asyncio")
    )
    with pytest.raises(TopologyError) as caught:
        check_imports(load_topology(path), source=str(path), handlers=True)
    lines = str(caught.value).splitlines()
    assert (
        f"{path}: pools.aio.worker_pool: solo pool runs job type 'test.flaky' on queue"
        " 'looped', but its handler 'tests.async_jobs:flaky' (queues.looped.handlers.test.flaky)"
        " is async def: an async def handler needs worker_pool: asyncio"
    ) in lines
    assert (
        f"{path}: pools.threads.worker_pool: asyncio pool runs job type 'test.sleep' on queue"
        " 'threaded', but its handler 'tests.jobs:sleep' (job_types.test.sleep.handler) is a"
        " plain def: an asyncio pool runs only async def handlers (use worker_pool: threads"
        " for blocking code)"
    ) in lines
    # Each pool runs 6 job types, every one of them mismatched now; nothing else is wrong.
    assert sum(": pools.aio.worker_pool: " in line for line in lines) == 6
    assert sum(": pools.threads.worker_pool: " in line for line in lines) == 6
    assert len(lines) == 12


def test_a_sync_handler_on_an_asyncio_pool_names_the_default_handler(tmp_path: Path) -> None:
    path = swapped(tmp_path, '      test.note: "tests.async_jobs:record"\n', "")
    result = runner.invoke(app, ["check"], env={"CONVEYOR_QUEUES_FILE": str(path)})
    assert result.exit_code == 2
    assert (
        f"{path}: pools.aio.worker_pool: asyncio pool runs job type 'test.note' on queue"
        " 'looped', but its handler 'tests.jobs:record' (job_types.test.note.handler) is a"
        " plain def: an asyncio pool runs only async def handlers (use worker_pool: threads"
        " for blocking code)"
    ) in result.output.replace("\n", " ").replace("  ", " ")


def test_a_worker_refuses_to_start_with_a_mismatch(tmp_path: Path) -> None:
    path = swapped(tmp_path, '      test.note: "tests.async_jobs:record"\n', "")
    result = runner.invoke(
        app, ["worker", "--pool", "aio"], env={"CONVEYOR_QUEUES_FILE": str(path)}
    )
    assert result.exit_code != 0
    assert "pools.aio.worker_pool: asyncio pool runs job type 'test.note'" in result.output


class _AsyncCallable:
    async def __call__(self, payload: object, ctx: object) -> None:
        return None


def test_async_handlers_are_told_from_sync_ones() -> None:
    assert is_async_handler(async_jobs.record)
    assert is_async_handler(_AsyncCallable())
    assert not is_async_handler(jobs.record)
    assert not is_async_handler(len)
