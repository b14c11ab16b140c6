"""Regenerate docs/settings.md from the settings object, ``infra.settings`` (``make docs``).

One table per section: every variable with its type, default and the field's
docstring, then the variables other tools own that Conveyor reads or sets.
``tests/unit/test_settings_docs.py`` fails when the page is stale, so a new or
changed setting cannot ship without its documentation.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic.fields import FieldInfo

from infra.settings import OTHER_VARIABLES, SECTIONS, Section

PAGE = Path(__file__).with_name("settings.md")

HEADER = """\
# Settings reference

Generated from `infra/settings.py` by `make docs` (a test fails when it is stale).
Conveyor is configured by environment variables, all read through one settings
object: `infra.settings.load_settings()` returns it, with one section per role
(`load_settings().api.rate_per_s` is `CONVEYOR_API_RATE_PER_S`). A section is read
from the environment when first used; an invalid value fails with an error naming
the variable (`infra.settings.SettingsError`). AWS itself is configured the
standard way (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, credentials …):
boto3 reads those variables, and Conveyor does not repeat them.
"""

EXCEPTIONS = """\
## Exceptions

None: `infra/settings.py` is the only module of `infra`, `producers`, `workers`,
`ops` and `conveyor` that touches `os.environ` (`tests/unit/test_settings.py`
keeps it so). Child processes (worker nodes, the API and the emulator under
`conveyor up`) get their environment from `infra.settings.child_environment()`.
The `--backend` and `--max-body-bytes` options are read by the CLI's option parser
(so `--help` shows them); their variable names come from the settings object.
"""

_TYPE_NAMES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Path: "path",
}
_CONSTRAINTS: dict[type, tuple[str, str]] = {
    annotated_types.Gt: ("gt", ">"),
    annotated_types.Ge: ("ge", "≥"),
    annotated_types.Lt: ("lt", "<"),
    annotated_types.Le: ("le", "≤"),
}


def _markdown(text: str) -> str:
    """A docstring as one table cell: RST literals as Markdown code, one line, no pipes."""
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip().replace("|", "\\|")


def _type(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _type(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _kind(field: FieldInfo) -> str:
    parts = [_type(field.annotation)]
    for constraint in field.metadata:
        known = _CONSTRAINTS.get(type(constraint))
        if known is not None:
            attribute, symbol = known
            parts.append(f"{symbol} {getattr(constraint, attribute)}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    return "unset" if field.default is None else f"`{field.default}`"


def _section(attribute: str, section: type[Section]) -> str:
    doc = _markdown((section.__doc__ or "").strip().splitlines()[0])
    rows = [
        f"## `{attribute}`: {doc}",
        "",
        f"`load_settings().{attribute}`, an `infra.settings.{section.__name__}`.",
        "",
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in section.model_fields.items():
        rows.append(
            f"| `{section.env_name(name)}` | {_kind(field)} | {_default(field)}"
            f" | {_markdown(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


def _other_variables() -> str:
    rows = [
        "## Other variables",
        "",
        "Owned by other tools (or set for child processes), and read or set through"
        " `infra.settings`.",
        "",
        "| Variable | What it does here |",
        "| --- | --- |",
    ]
    rows += [f"| `{name}` | {_markdown(what)} |" for name, what in OTHER_VARIABLES.items()]
    return "\n".join(rows) + "\n"


def render() -> str:
    """The whole page, as ``make docs`` writes it."""
    sections = [HEADER]
    sections += [_section(attribute, section) for attribute, section in SECTIONS.items()]
    sections += [_other_variables(), EXCEPTIONS]
    return "\n".join(sections)


def main() -> None:
    """Write docs/settings.md, or with ``--check`` exit 1 when it differs from the settings."""
    page = render()
    if "--check" in sys.argv[1:]:
        if PAGE.read_text(encoding="utf-8") != page:
            raise SystemExit("docs/settings.md is stale: run `make docs`")
        return
    PAGE.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
