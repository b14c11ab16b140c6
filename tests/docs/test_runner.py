"""The docs runner catches what it is there to catch (tests/docs/runner.py).

Small pages written here, run with the real runner and the real CLI: a flag the CLI
does not know fails the page (what a flag renamed in code without the docs looks
like), output the page shows must be printed, placeholders and unexplained skips are
refused, and the environment holds nothing of the test's AWS or Conveyor settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import REPO
from tests.docs.runner import DocsTestError, Session, parse, parse_page, problems


def _run(tmp_path: Path, page: str) -> Session:
    session = Session(tmp_path)
    session.run_page(parse(page, "page.md"))
    return session


def test_a_documented_flag_the_cli_does_not_know_fails_the_page(tmp_path: Path) -> None:
    # The quickstart's export block, as if the CLI had renamed -o: the page must fail.
    blocks = [b for b in parse_page(REPO / "docs" / "quickstart.md") if "-o conveyor" in b.text]
    assert blocks, "the quickstart exports CloudFormation with -o"
    renamed = blocks[0].text.replace(" -o ", " --output-file ")
    with pytest.raises(DocsTestError, match="exit 2, the page expects 0"):
        _run(tmp_path / "renamed", f"```sh\n{renamed}```\n")
    _run(tmp_path / "as-written", f"```sh\n{blocks[0].text}```\n")  # and as written it passes


def test_output_a_page_shows_must_be_printed(tmp_path: Path) -> None:
    shown = "```console\n$ conveyor check\nqueues.yaml: OK — … topics, … queues\n```\n"
    _run(tmp_path / "ok", shown)
    wrong = "```console\n$ conveyor check\nqueues.yaml: all good\n```\n"
    with pytest.raises(DocsTestError, match=r"the page shows 'queues\.yaml: all good'"):
        _run(tmp_path / "wrong", wrong)


def test_exit_codes_variables_files_and_retries(tmp_path: Path) -> None:
    page = """
<!-- docs-test: exit 3 -->
```sh
exit 3
```

```sh
GREETING=$(echo hello)
```

<!-- docs-test: file notes/hi.txt -->
```text
hi
```

```console
$ echo "$GREETING $(cat notes/hi.txt)"
hello hi
```

<!-- docs-test: retry 30s -->
```sh
echo x >> tries
test "$(wc -l < tries)" -ge 3   # passes on the third try
```
"""
    session = _run(tmp_path, page)
    assert len(session.ran) == 5
    with pytest.raises(DocsTestError, match="exit 1, the page expects 0"):
        _run(tmp_path / "false", "```sh\nfalse\n```\n")


def test_the_environment_has_nothing_of_the_tests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("CONVEYOR_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    page = """```python
import os
import sys

leaked = [k for k in os.environ if k.startswith(("AWS_", "CONVEYOR_")) or k == "PYTHONPATH"]
assert not leaked, leaked
assert os.path.exists("queues.yaml") and os.path.isdir("sample_jobs")
assert os.path.realpath(".venv") == os.path.realpath(sys.prefix)
```
"""
    _run(tmp_path, page)


def test_placeholders_long_running_neighbours_and_bare_skips_are_refused() -> None:
    found = problems(parse("```sh\nconveyor jobs show 3f2a…   # an id\n```\n", "p.md"))
    assert len(found) == 1
    assert "placeholder" in found[0]
    assert problems(parse("```sh\nconveyor dlq list   # ids like 3f2a…\n```\n", "p.md")) == []
    found = problems(parse("```sh\nconveyor up\nconveyor dlq list\n```\n", "p.md"))
    assert len(found) == 1
    assert "block of its own" in found[0]
    with pytest.raises(DocsTestError, match="needs a category"):
        parse("<!-- docs-test: skip -->\n```sh\nmake test\n```\n", "p.md")
    with pytest.raises(DocsTestError, match="needs a category"):
        parse("<!-- docs-test: skip aws -->\n```sh\naws s3 ls\n```\n", "p.md")
    with pytest.raises(DocsTestError, match="unknown docs-test directive"):
        parse("<!-- docs-test: skipp aws: x -->\n```sh\naws s3 ls\n```\n", "p.md")
    (block,) = parse("<!-- docs-test: skip aws: needs an account -->\n```sh\naws s3 ls\n```\n", "p")
    assert block.skip == "aws: needs an account"
    assert not block.runnable
