"""The console's templates and static files ship in a non-editable install (setup.cfg's
package_data names them: a file it misses would 404 or 500 only once installed)."""

from __future__ import annotations

import configparser
import fnmatch

from tests import REPO

CONSOLE = REPO / "ops" / "console"


def test_package_data_covers_every_template_and_static_file() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = config["options.package_data"]["ops.console"].split()
    files = [
        str(path.relative_to(CONSOLE))
        for folder in ("templates", "static")
        for path in (CONSOLE / folder).iterdir()
        if path.is_file()
    ]
    assert files
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


def test_htmx_is_vendored_with_its_license() -> None:
    htmx = (CONSOLE / "static" / "htmx.min.js").read_text(encoding="utf-8")
    assert htmx.startswith("/*! htmx.org 2.")
    assert "Zero-Clause BSD" in (CONSOLE / "static" / "htmx.LICENSE.txt").read_text()
    # No CDN: every script and stylesheet the pages load comes from /static/.
    for template in (CONSOLE / "templates").glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert "://" not in text.replace("http-equiv", ""), template.name
