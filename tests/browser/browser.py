"""Headless chromium through Playwright, for the browser tests and the console's screenshots.

Playwright's own browser download is not used (it is not available everywhere): it
drives Debian's ``chromium`` package through ``executable_path``. ``make browser``
installs that package as root, or says in one line what to install.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

#: Where Debian's package puts it, for a PATH without /usr/bin.
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
#: The one line said when the browser is missing.
MISSING = (
    "the browser tests need Debian's chromium: `make browser` installs it as root"
    " (or: sudo apt-get install chromium)"
)
#: How long a page action or an assertion on the page may take before it fails.
PAGE_TIMEOUT_MS = 30_000


def chromium_executable() -> str | None:
    """The chromium binary to drive, None when it is not installed."""
    found = shutil.which("chromium")
    if found:
        return found
    return str(DEBIAN_CHROMIUM) if DEBIAN_CHROMIUM.exists() else None


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless chromium, closed at the end (RuntimeError with :data:`MISSING` if absent)."""
    executable = chromium_executable()
    if executable is None:
        raise RuntimeError(MISSING)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser
        finally:
            browser.close()
