"""``dlq export``: the selected jobs as JSON Lines, one job per line, the DLQ untouched.

Each line holds the message id, job id and type, the original body (a string,
byte for byte), the failure record, and the system and message attributes — what
is needed to understand a failure later or to send the job again by hand.
The file is written whole or not at all: lines go to a temporary file beside it,
renamed over it at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from ops.dlq.jobs import DeadJob
from ops.dlq.queues import DlqError
from ops.text import printable_json


def export_line(job: DeadJob) -> str:
    """One JSON line for ``job`` (no trailing newline), safe for a terminal and for UTF-8.

    Control characters and lone surrogates in strings are written as ``\\uXXXX``:
    the line decodes to exactly the same body.
    """
    return printable_json(
        json.dumps(job.export_record(), ensure_ascii=False, separators=(",", ":"))
    )


class ExportFile:
    """A JSONL file that appears only when :meth:`commit` is called.

    Opened up front, so an unwritable path is reported before the DLQ is read.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        if path.is_dir():
            raise DlqError(f"cannot write {path}: it is a directory", usage=True)
        try:
            self._file: IO[str] = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in commit/discard
                "w",
                encoding="utf-8",
                dir=path.parent,
                prefix=f".{path.name}.",
                suffix=".tmp",
                delete=False,
            )
        except OSError as exc:
            raise DlqError(f"cannot write {path}: {exc.strerror or exc}", usage=True) from None

    def write(self, job: DeadJob) -> None:
        """Append one job."""
        try:
            self._file.write(export_line(job) + "\n")
        except OSError as exc:
            raise DlqError(f"cannot write {self.path}: {exc.strerror or exc}") from None
        self.count += 1

    def commit(self) -> None:
        """Flush to disk and put the file in place."""
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._file.name, self.path)
        except OSError as exc:
            self.discard()
            raise DlqError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def discard(self) -> None:
        """Drop what was written; the target path is left as it was."""
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._file.closed:
            self.discard()
