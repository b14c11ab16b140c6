"""Hypothesis keeps its caches outside the checkout (nothing to ignore, nothing to commit)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "conveyor-hypothesis"))
