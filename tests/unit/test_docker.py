"""The Dockerfile: hadolint-clean, non-root, one entry point, a health check for every role.

There is no Docker engine here: the image is not built. Instead the install the
Dockerfile performs (a wheel, installed with constraints.txt and the same extras
into a fresh virtual environment) is repeated and ``conveyor --help`` run from it.
The production target installs no extra (no moto); the ``emulator`` target
installs the ``emulator`` extra.
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


def _stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions (its ``FROM`` first), by the stage's name."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, args in _instructions(DOCKERFILE):
        if word == "FROM":
            current = []
            stages[re.split(r"\s+AS\s+", args, flags=re.IGNORECASE)[-1]] = current
        current.append((word, args))
    return stages


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


def _dockerfile_install(target: str) -> tuple[str, list[str]]:
    """The extras and the pip options of the install of the wheel the ``target`` image copies."""
    stages = _stages()
    builds = [args for word, args in stages["build"] if word == "RUN"]
    assert any("pip wheel --no-deps -w /wheels ." in run for run in builds)
    (copy,) = [args for word, args in stages[target] if word == "COPY" and "--from=" in args]
    source = copy.split()[0].removeprefix("--from=")
    (run,) = [args for word, args in stages[source] if word == "RUN" and "pip install" in args]
    install = next(part for part in run.split("&&") if "pip install" in part)
    words = shlex.split(install)
    (target,) = [w for w in words if w.startswith("$1")]
    extras = re.fullmatch(r"\$1(\[[\w,-]+\])?", target)
    assert extras is not None, target
    options = words[words.index("install") + 1 : words.index(target)]
    return extras.group(1) or "", options


def test_production_has_no_extra_and_the_emulator_its_own_target() -> None:
    stages = _stages()
    # The default target (the last stage) is production.
    assert list(stages)[-1] == "production"
    assert _dockerfile_install("production") == ("", ["-c", "constraints.txt"])
    assert _dockerfile_install("emulator") == ("[emulator]", ["-c", "constraints.txt"])
    emulator = dict(stages["emulator"])
    assert emulator["FROM"].startswith("python:3.11-slim")
    assert emulator["USER"] not in ("root", "0")
    command = json.loads(emulator["ENTRYPOINT"]) + json.loads(emulator["CMD"])
    assert command[:2] == ["conveyor", "emulator"]
    # Reached from the other containers: it must not bind loopback only.
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104
    # The production image's worker /healthz is reachable by probes from outside.
    assert "CONVEYOR_WORKER_HEALTH_HOST=0.0.0.0" in dict(stages["production"])["ENV"]


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
    extras, options = _dockerfile_install("production")
    assert extras == ""
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
    # The production image has no emulator: moto is not installed, and no role needs it.
    no_moto = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import moto"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert no_moto.returncode != 0
    for role in ("api", "worker"):
        helped = subprocess.run(
            [str(venv / "bin" / "conveyor"), role, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert helped.returncode == 0, helped.stderr
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
    # The emulator target's install: the same wheel with the extra; then the emulator loads.
    extras, options = _dockerfile_install("emulator")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", *options, f"{wheel}{extras}"],
        check=True,
        timeout=600,
        cwd=REPO,
        capture_output=True,
    )
    imported = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import moto.server, infra.emulator.server"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
