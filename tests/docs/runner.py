"""Running a Markdown page's examples as a reader would: every shell and Python block, in order.

What runs: the fenced blocks of a page whose language is ``sh``, ``bash``, ``console``
or ``python``. Each runs in a subprocess of its own, from one fresh working directory
per page (a copy of the sample project: ``queues.yaml``, ``sample_jobs/``, the
Makefile and a ``.venv`` link to this environment), with an environment that has no
``AWS_*``, ``CONVEYOR_*`` or ``PYTHONPATH`` variable and a ``HOME`` of its own —
nothing set up by hand, as in a new terminal of a fresh clone.

* ``sh``/``bash``: the block is one ``bash -e -o pipefail`` script. A variable a
  block assigns (``JOB_ID=$(…)``) is seen by the page's later blocks, as in one
  terminal.
* ``console``: lines starting with ``$`` are the commands (a trailing ``\\`` continues
  one); the other lines are output the page promises. Each must appear, in order, in
  what the commands print (stdout and stderr); ``…`` in them matches anything.
* ``python``: the block is a script run with this environment's interpreter.
* A block whose commands are all long-running (``make run``, ``conveyor up``) runs in
  the background as "terminal 1", until the page is done or a later terminal-1 block
  replaces it (it is stopped with SIGINT first, as Ctrl-C would); the next block runs
  once the API it serves answers ``/healthz`` and it has printed ``conveyor is up``.
  Every other block is "another terminal": a separate process.

A block exits 0 unless a directive says otherwise. Directives are HTML comments right
before a block (invisible on the rendered page), ``;``-separated::

    <!-- docs-test: skip aws: creates a CloudFormation stack in an AWS account -->
    <!-- docs-test: exit 2 -->
    <!-- docs-test: retry 60s -->        run it again until it passes (a reader's "wait, then…")
    <!-- docs-test: file mypkg/handlers.py -->   the block is that file's content: written, not run

``skip`` needs a category (:data:`SKIP_CATEGORIES`) and a reason. A runnable block
must hold no placeholder (``…``): the page must show how to get the real value.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx

from tests import REPO

#: The languages whose blocks run.
RUNNABLE = frozenset({"sh", "bash", "console", "python"})
#: Why a block may be left out; a skip directive names one of these, then its reason.
SKIP_CATEGORIES = {
    "aws": "needs an AWS account and credentials",
    "cluster": "needs a Kubernetes cluster",
    "docker": "needs a Docker engine",
    "suite": "runs the test suite itself (minutes; the suite is what runs this)",
}
#: Commands that stay in the foreground until Ctrl-C: they run as "terminal 1".
LONG_RUNNING = re.compile(r"^(make run|(\.venv/bin/)?conveyor (up|emulator|workers up))\b")
#: What a reader types in for a value they do not have: never in a runnable block.
PLACEHOLDER = "…"
#: How long a block may run (a passing block takes seconds).
BLOCK_TIMEOUT_S = 120.0
#: How long terminal 1 may take to be ready, and to stop after Ctrl-C.
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 45.0
#: The files of the repository a reader's working directory holds (a fresh clone's).
PROJECT_FILES = ("queues.yaml", "Makefile", "setup.cfg", "pyproject.toml", "constraints.txt")
PROJECT_DIRS = ("sample_jobs",)
#: The pages whose examples run (README.md and docs/*.md).
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))

_DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
_FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")


class DocsTestError(Exception):
    """A page's block failed, or the page is not runnable as written."""


@dataclass(frozen=True)
class Block:
    """One fenced block of a page, and what its directives say about it."""

    page: str
    line: int  #: 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None = None
    exit_code: int = 0
    retry_s: float | None = None
    file: str | None = None

    @property
    def where(self) -> str:
        """``page:line``, for messages."""
        return f"{self.page}:{self.line}"

    @property
    def runnable(self) -> bool:
        """Whether the block runs (or is written, for ``file``)."""
        return self.file is not None or (self.lang in RUNNABLE and self.skip is None)

    def commands(self) -> list[str]:
        """The shell commands of a ``sh``/``bash``/``console`` block (continuations joined)."""
        lines = self.text.splitlines()
        if self.lang == "console":
            out: list[str] = []
            continuing = False
            for line in lines:
                if line.startswith("$ ") or line == "$":
                    out.append(line[2:])
                elif continuing:
                    out[-1] += "\n" + line
                else:
                    continue
                continuing = out[-1].endswith("\\")
            return out
        return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def expected_output(self) -> list[str]:
        """The output lines a ``console`` block shows (comments after two spaces dropped)."""
        if self.lang != "console":
            return []
        expected: list[str] = []
        continuing = False
        for line in self.text.splitlines():
            if line.startswith("$ ") or line == "$":
                continuing = line.endswith("\\")
                continue
            if continuing:
                continuing = line.endswith("\\")
                continue
            shown = re.split(r"\s{2,}#\s", line)[0].strip()
            if shown:
                expected.append(shown)
        return expected

    def script(self) -> str:
        """The shell script a ``sh``/``bash``/``console`` block runs."""
        return self.text if self.lang != "console" else "\n".join(self.commands()) + "\n"

    def long_running(self) -> bool:
        """All of the block's commands stay in the foreground: it is terminal 1."""
        if self.lang not in {"sh", "bash", "console"}:
            return False
        commands = [c.split("  #")[0].strip() for c in self.commands()]
        return bool(commands) and all(LONG_RUNNING.match(c) for c in commands)


def _directives(comments: list[str], where: str) -> dict[str, object]:
    found: dict[str, object] = {}
    for comment in comments:
        for raw in comment.split(";"):
            word, _, rest = raw.strip().partition(" ")
            rest = rest.strip()
            if word == "skip":
                category, _, reason = rest.partition(":")
                if category.strip() not in SKIP_CATEGORIES or not reason.strip():
                    raise DocsTestError(
                        f"{where}: 'skip' needs a category ({', '.join(SKIP_CATEGORIES)})"
                        f" and a reason: 'skip aws: why', not {raw.strip()!r}"
                    )
                found["skip"] = f"{category.strip()}: {reason.strip()}"
            elif word == "exit" and rest.isdigit():
                found["exit_code"] = int(rest)
            elif word == "retry" and re.fullmatch(r"\d+(\.\d+)?s", rest):
                found["retry_s"] = float(rest[:-1])
            elif word == "file" and rest and not rest.startswith("/") and ".." not in rest:
                found["file"] = rest
            else:
                raise DocsTestError(f"{where}: unknown docs-test directive {raw.strip()!r}")
    return found


def parse(text: str, page: str) -> list[Block]:
    """Every fenced block of a Markdown page, with the directives right before it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, lang = opening.group(1), opening.group(2)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        if i == len(lines):
            raise DocsTestError(f"{page}:{start + 1}: a code block is never closed")
        i += 1
        # The directives: HTML comments right before the fence (blank lines between are fine).
        comments: list[str] = []
        j = start - 1
        while j >= 0 and (not lines[j].strip() or lines[j].strip().startswith("<!--")):
            comments += _DIRECTIVE.findall(lines[j])
            j -= 1
        where = f"{page}:{start + 1}"
        directives = _directives(comments, where)
        block = Block(page=page, line=start + 1, lang=lang, text="\n".join(body) + "\n")
        blocks.append(replace(block, **directives))  # type: ignore[arg-type]
    return blocks


def parse_page(path: Path) -> list[Block]:
    """:func:`parse` of a file, named relative to the repository."""
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    return parse(path.read_text(encoding="utf-8"), name)


def problems(blocks: list[Block]) -> list[str]:
    """What makes a page's runnable blocks not runnable as written (before running any)."""
    found = []
    for block in blocks:
        if not block.runnable or block.file is not None:
            continue
        if PLACEHOLDER in _code(block):
            found.append(
                f"{block.where}: a placeholder ({PLACEHOLDER}) in a block that runs: show"
                " the real value, or how to get it"
            )
        if block.long_running() and block.exit_code != 0:
            found.append(f"{block.where}: a terminal-1 block cannot expect an exit code")
        commands = [c.split("  #")[0].strip() for c in block.commands()]
        if (
            block.lang != "python"
            and any(LONG_RUNNING.match(c) for c in commands)
            and not block.long_running()
        ):
            found.append(
                f"{block.where}: a long-running command shares a block with others: give it a"
                " block of its own (it runs in terminal 1)"
            )
    return found


def _code(block: Block) -> str:
    """A runnable block without its comments (a comment may say ``…``; code may not)."""
    kept = []
    for line in (block.script() if block.lang != "python" else block.text).splitlines():
        if line.lstrip().startswith("#"):
            continue
        kept.append(re.split(r"\s{2,}#\s", line)[0])
    return "\n".join(kept)


def clean_environment(home: Path) -> dict[str, str]:
    """A new terminal's environment: nothing of AWS's or Conveyor's, this venv's bin first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "CONVEYOR_", "PYTEST_", "COV_"))
        and k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    env["NO_COLOR"] = "1"  # output the page shows has no escape codes
    env["COLUMNS"] = "120"
    return env


def make_project(directory: Path) -> None:
    """A fresh clone's working directory: the sample project and a ``.venv`` that is ready.

    The Makefile's venv stamp must stay newer than the files it depends on, or ``make
    run`` would reinstall: the copies get the stamp's time minus a second.
    """
    directory.mkdir(parents=True, exist_ok=True)
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    older = stamp.stat().st_mtime - 1 if stamp.exists() else None
    for name in PROJECT_FILES:
        shutil.copy2(REPO / name, directory / name)
        if older is not None:
            os.utime(directory / name, (older, older))
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
    (directory / ".venv").symlink_to(venv, target_is_directory=True)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def output_matches(expected: list[str], output: str) -> str | None:
    """The first expected line not found (in order) in ``output``; None when all are."""
    position = 0
    for line in expected:
        parts = [re.escape(p) for p in re.split(r"\s+", line.strip())]
        pattern = r"[ \t]+".join(parts).replace(re.escape(PLACEHOLDER), ".*?")
        found = re.compile(pattern).search(output, position)
        if not found:
            return line
        position = found.end()
    return None


@dataclass
class Terminal:
    """The long-running block in the background, its output in a file."""

    block: Block
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Ctrl-C (SIGINT to its process group), then SIGKILL if it does not stop in time."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):  # whatever it left in its group goes too
            os.killpg(self.proc.pid, signal.SIGKILL)


@dataclass
class Session:
    """One page's run: its working directory, its terminals, the variables its blocks set."""

    root: Path
    workdir: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    terminal: Terminal | None = None
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.root / "project"
        make_project(self.workdir)
        (self.root / "home").mkdir(exist_ok=True)
        self.env = clean_environment(self.root / "home")
        self._vars = self.root / "vars.sh"
        self._vars.write_text("")

    # -- blocks -------------------------------------------------------------------------

    def run_page(self, blocks: list[Block]) -> None:
        """Every block in order; raises :class:`DocsTestError` at the first that fails."""
        found = problems(blocks)
        if found:
            raise DocsTestError("\n".join(found))
        try:
            for block in blocks:
                self.run_block(block)
        finally:
            self.close()

    def run_block(self, block: Block) -> None:
        """Run (or write, or skip) one block."""
        if block.skip is not None:
            self.skipped.append(f"{block.where} ({block.skip})")
            return
        if block.file is not None:
            target = self.workdir / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            self.ran.append(f"{block.where} (wrote {block.file})")
            return
        if block.lang not in RUNNABLE:
            return
        started = time.monotonic()
        if block.long_running():
            self.start_terminal(block)
        else:
            self.run_foreground(block)
        self.ran.append(f"{block.where} ({time.monotonic() - started:.1f} s)")

    def _argv(self, block: Block) -> list[str]:
        if block.lang == "python":
            # -c, as a reader pasting it into python in the project's directory: the
            # working directory is on the import path (a script's own directory is not).
            return [sys.executable, "-c", block.text]
        names = sorted({m.group(1) for c in block.commands() for m in [_ASSIGNMENT.match(c)] if m})
        save = "".join(
            f"\ndeclare -p {n} >> {shlex.quote(str(self._vars))} 2>/dev/null || true" for n in names
        )
        script = f"source {shlex.quote(str(self._vars))}\n{block.script()}{save}\n"
        return ["bash", "-e", "-o", "pipefail", "-c", script]

    def run_foreground(self, block: Block) -> None:
        """Run a block in "another terminal"; check its exit code and the output it shows."""
        deadline = time.monotonic() + (block.retry_s or 0)
        while True:
            failure = self._attempt(block)
            if failure is None:
                return
            if time.monotonic() > deadline:
                raise DocsTestError(failure)
            time.sleep(0.5)  # a reader's "wait, then run it again"; bounded by the deadline

    def _attempt(self, block: Block) -> str | None:
        try:
            result = subprocess.run(
                self._argv(block),
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,  # one stream, as a terminal shows them
                text=True,
                timeout=BLOCK_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return f"{block.where}: still running after {BLOCK_TIMEOUT_S:g} s ({exc})"
        output = result.stdout
        context = (
            f"\n--- block ---\n{block.text}--- output ---\n{_tail(output)}"
            + self._terminal_context()
        )
        if result.returncode != block.exit_code:
            return (
                f"{block.where}: exit {result.returncode}, the page expects"
                f" {block.exit_code}{context}"
            )
        missing = output_matches(block.expected_output(), output)
        if missing is not None:
            return (
                f"{block.where}: the page shows {missing!r}, the commands did not print it{context}"
            )
        return None

    def _terminal_context(self) -> str:
        if self.terminal is None:
            return ""
        where = self.terminal.block.where
        return f"\n--- terminal 1 ({where}) ---\n{_tail(self.terminal.output(), 20)}"

    # -- terminal 1 ---------------------------------------------------------------------

    def start_terminal(self, block: Block) -> None:
        """Stop terminal 1 (Ctrl-C) if it runs something, start ``block`` there, wait for it."""
        if self.terminal is not None:
            self.terminal.stop()
        log = self.root / f"terminal-1-{block.line}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self._argv(block),
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.terminal = Terminal(block, proc, log)
        if any(re.search(r"\b(make run|conveyor up)\b", c) for c in block.commands()):
            self._wait_until_up(block)

    def _wait_until_up(self, block: Block) -> None:
        assert self.terminal is not None
        port = 8000
        for command in block.commands():
            given = re.search(r"--api-port[ =](\d+)", command)
            if given:
                port = int(given.group(1))
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=1.0) as http:
            while True:
                if self.terminal.proc.poll() is not None:
                    raise DocsTestError(
                        f"{block.where}: exited with code {self.terminal.proc.returncode}"
                        f" before it was up\n{_tail(self.terminal.output())}"
                    )
                try:
                    healthy = http.get(url).status_code == 200
                except httpx.HTTPError:
                    healthy = False
                if healthy and "conveyor is up" in self.terminal.output():
                    return
                if time.monotonic() > deadline:
                    raise DocsTestError(
                        f"{block.where}: {url} not up after {READY_TIMEOUT_S:g} s"
                        f"\n{_tail(self.terminal.output())}"
                    )
                time.sleep(0.2)  # polling interval, bounded by the deadline

    def close(self) -> None:
        """Stop terminal 1."""
        if self.terminal is not None:
            started = time.monotonic()
            self.terminal.stop()
            self.ran.append(f"stopped terminal 1 ({time.monotonic() - started:.1f} s)")
            self.terminal = None


def runnable_pages() -> Iterator[Path]:
    """The pages with at least one block that runs."""
    for page in PAGES:
        if any(b.runnable for b in parse_page(page)):
            yield page
