"""The Dockerfile: hadolint-clean, non-root, one entry point, a health check for every role.

There is no Docker engine here: the image is not built. Instead the install the
Dockerfile performs (a wheel, installed with constraints.txt and the same extras
into a fresh virtual environment) is repeated and ``conveyor --help`` run from it.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()
BIN = Path(sys.executable).parent


def _instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions(DOCKERFILE)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_hadolint_reports_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_multi_stage_non_root_one_entry_point() -> None:
    instructions = _instructions(DOCKERFILE)
    assert sum(word == "FROM" for word, _ in instructions) >= 2
    runtime = dict(_runtime_stage())
    assert runtime["FROM"].startswith("python:3.11-slim")
    assert runtime["USER"] not in ("root", "0")
    assert json.loads(runtime["ENTRYPOINT"]) == ["conveyor"]
    assert "HEALTHCHECK" in runtime
    # The runtime stage copies the built environment, not the sources.
    copies = [args for word, args in _runtime_stage() if word == "COPY"]
    # The sample topology and its handlers sit beside each other, outside the wheel.
    sample = ("queues.yaml", "sample_jobs")
    assert all("--from=build" in c or c.split()[0] in sample for c in copies), copies


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "tests", "**/__pycache__"):
        assert entry in ignored
    # …but never what the Dockerfile copies.
    copied = [args.split()[0] for word, args in _instructions(DOCKERFILE) if word == "COPY"]
    for source in copied:
        if not source.startswith("--"):
            assert source not in ignored


def _healthcheck_command() -> list[str]:
    (args,) = [args for word, args in _runtime_stage() if word == "HEALTHCHECK"]
    command: list[str] = json.loads(args[args.index("CMD") + 3 :].strip())
    return command


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def health_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


def _run_check(url: str) -> int:
    command = _healthcheck_command()
    assert command[0] == "python"
    env = {**os.environ, "CONVEYOR_HEALTHCHECK_URL": url}
    # Run with a bare interpreter (-I ignores the environment's site-packages): stdlib only.
    result = subprocess.run(
        [sys.executable, "-I", *command[1:]], env=env, capture_output=True, timeout=30, check=False
    )
    return result.returncode


def test_healthcheck_probes_the_configured_url_and_passes_when_none(health_server: str) -> None:
    assert _run_check(f"{health_server}/healthz") == 0
    assert _run_check(f"{health_server}/broken") != 0
    assert _run_check("") == 0  # a one-shot CLI role: nothing to probe


def _dockerfile_install() -> tuple[str, list[str]]:
    """The extras and the pip options of the Dockerfile's install of the wheel."""
    (run,) = [args for word, args in _instructions(DOCKERFILE) if word == "RUN" and "wheel" in args]
    assert "pip wheel --no-deps -w /wheels ." in run
    install = next(part for part in run.split("&&") if "pip install" in part)
    words = shlex.split(install)
    (target,) = [w for w in words if w.startswith("$1")]
    extras = re.fullmatch(r"\$1(\[[\w,-]+\])?", target)
    assert extras is not None, target
    options = words[words.index("install") + 1 : words.index(target)]
    return extras.group(1) or "", options


#: What a checkout may hold besides its files: never part of a build's input.
BUILD_LEFTOVERS = (
    ".git",
    ".venv",
    ".conveyor",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".import_linter_cache",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_like_the_dockerfile_and_runs(tmp_path: Path) -> None:
    extras, options = _dockerfile_install()
    assert options == ["-c", "constraints.txt"]
    wheels = tmp_path / "wheels"
    # Built from a copy: pip builds in the source tree (build/, *.egg-info), and the
    # checkout must stay as it is while other tests run beside this one.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("conveyor-*.whl")
    # Only Conveyor's own packages: the sample handlers and the tests are not installed.
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split("/", 1)[0] for name in archive.namelist()}
    assert {"conveyor", "infra", "producers", "workers", "ops"} <= top
    assert not top & {"sample_jobs", "tests", "benchmarks", "docs"}, top
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        # --no-compile: the same files, without byte-compiling every dependency up front
        # (most of the install's CPU); what runs below compiles what it imports.
        [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", *options, f"{wheel}{extras}"],
        check=True,
        timeout=600,
        cwd=REPO,  # constraints.txt is relative, as in the Dockerfile's WORKDIR
        capture_output=True,
    )
    result = subprocess.run(
        [str(venv / "bin" / "conveyor"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for command in ("api", "worker", "infra", "dlq", "emulator"):
        assert command in result.stdout
    # As in the image: the handlers beside queues.yaml import, from any working directory.
    image_app = tmp_path / "app"
    image_app.mkdir()
    shutil.copy(REPO / "queues.yaml", image_app / "queues.yaml")
    shutil.copytree(REPO / "sample_jobs", image_app / "sample_jobs")
    checked = subprocess.run(
        [str(venv / "bin" / "conveyor"), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env={**os.environ, "CONVEYOR_QUEUES_FILE": str(image_app / "queues.yaml")},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
