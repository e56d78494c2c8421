"""Headless Chromium for the end-to-end tests and the README screenshots.

Uses the system's Chromium (Debian packages ``chromium`` and ``chromium-driver``, installed by
``scripts/install_browser.sh``) driven by Playwright's Python package; Playwright's own
browser downloads are never used.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

CHROMIUM_PATH = os.environ.get("POINTSUP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def browser_unavailable_reason() -> str | None:
    """Why the browser cannot be launched here, or None when it can."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        return f"{CHROMIUM_PATH} not found (install it with scripts/install_browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright; no browser download needed)"
    return None


@contextlib.contextmanager
def launched_chromium() -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium, with a fresh, empty profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield browser
        finally:
            browser.close()
