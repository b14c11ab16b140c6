"""The web console in a real browser: Playwright drives Debian's chromium (``make browser``)."""
