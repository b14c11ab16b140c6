"""``conveyor check``: every problem at once, and the project's own modules import.

A user's ``mypkg/handlers.py`` beside queues.yaml must pass ``conveyor check`` from a
shell with no ``PYTHONPATH``; an unknown key must not hide the file's other problems.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.topology import TopologyError, load_topology

QUEUES = """\
version: 1
project: mine
topics: {work: {}}
queues:
  jobs:
    subscriptions: [{topic: work}]
job_types:
  thing.do: {topic: work, payload: "mypkg.handlers:Thing", handler: "mypkg.handlers:do_thing"}
pools:
  main: {queues: [jobs], concurrency: 1}
"""

HANDLERS = """\
from pydantic import BaseModel

from conveyor import JobContext


class Thing(BaseModel):
    n: int


def do_thing(payload: Thing, ctx: JobContext) -> None:
    pass
"""


def make_project(root: Path, queues: str = QUEUES) -> Path:
    (root / "mypkg").mkdir(parents=True)
    (root / "mypkg" / "handlers.py").write_text(HANDLERS)
    (root / "queues.yaml").write_text(queues)
    return root / "queues.yaml"


def conveyor_check(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``conveyor check`` as a user runs it: no AWS_*, CONVEYOR_* or PYTHONPATH set."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CONVEYOR_")) and k != "PYTHONPATH"
    }
    return subprocess.run(
        # The console script, as a user runs it: `python -m` would put the working
        # directory on the import path by itself and hide what is being tested.
        [str(Path(sys.executable).parent / "conveyor"), "check"],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_package_beside_queues_yaml_passes_check_without_pythonpath(tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    result = conveyor_check(tmp_path / "proj")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("queues.yaml: OK — 1 topics, 1 queues, 1 job types")


def test_it_works_from_another_directory_too(tmp_path: Path) -> None:
    queues = make_project(tmp_path / "proj")
    (tmp_path / "elsewhere").mkdir()
    result = conveyor_check(tmp_path / "elsewhere", CONVEYOR_QUEUES_FILE=str(queues))
    assert result.returncode == 0, result.stderr


def test_the_setting_turns_it_off(tmp_path: Path) -> None:
    make_project(tmp_path / "proj")
    result = conveyor_check(tmp_path / "proj", CONVEYOR_IMPORT_PROJECT_DIR="false")
    assert result.returncode == 2
    assert "job_types.thing.do.payload: cannot import 'mypkg.handlers:Thing'" in result.stderr


def test_check_reports_every_problem_at_once_each_with_file_and_key(tmp_path: Path) -> None:
    broken = QUEUES.replace(
        "    subscriptions: [{topic: work}]\n",
        "    subscriptions: [{topic: work}]\n    colour: blue\n",  # an unknown key
    ).replace("topic: work, payload", "topic: wrok, payload")  # an unknown topic
    broken = broken.replace("mypkg.handlers:do_thing", "mypkg.handlers:nope")  # a bad handler
    make_project(tmp_path / "proj", broken)
    result = conveyor_check(tmp_path / "proj")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        ["queues.yaml", "queues.jobs.colour"],
        ["queues.yaml", "job_types.thing.do.topic"],
        ["queues.yaml", "job_types.thing.do.handler"],
    ], result.stderr
    assert "unknown key 'colour'" in lines[0]
    assert "unknown topic 'wrok'" in lines[1]
    assert "has no attribute 'nope'" in lines[2]
    assert "Traceback" not in result.stderr


def test_loading_lists_the_static_problems_an_unknown_key_used_to_hide(tmp_path: Path) -> None:
    text = QUEUES.replace("  main: {queues: [jobs]", "  main: {colour: 1, queues: [jbos]")
    path = tmp_path / "queues.yaml"
    path.write_text(text)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    paths = [p.path for p in caught.value.problems]
    assert "pools.main.colour" in paths
    assert any(p.startswith("pools.main.queues") for p in paths), paths
    assert caught.value.partial is not None
