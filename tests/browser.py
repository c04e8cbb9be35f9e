"""A real browser for tests: Debian's chromium, driven by Playwright from PyPI.

No browser is downloaded: ``scripts/install-chromium`` installs Debian's package when the
machine lacks it (root and a Debian mirror needed, as for PostgreSQL). Each page a test
opens records its console errors and uncaught exceptions, and a test keeps screenshots
in ``test-output/screenshots/`` (git-ignored) to be looked at.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_CHROMIUM = REPO / "scripts" / "install-chromium"
SCREENSHOTS = REPO / "test-output" / "screenshots"
# Headless, as root in a container, on a machine with no network beyond loopback: no
# sandbox, no GPU, and none of Chromium's background connections (each would be refused).
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic")


def chromium_path() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    result = subprocess.run([str(INSTALL_CHROMIUM)], capture_output=True, text=True)
    found = shutil.which("chromium")
    if found:
        return found
    raise RuntimeError(f"chromium not found, and {INSTALL_CHROMIUM} could not install it "
                       f"(exit {result.returncode}):\n{result.stdout}{result.stderr}")


@contextlib.contextmanager
def chromium() -> Iterator[object]:
    """A headless chromium (Playwright's Browser), closed at the end."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(FLAGS))
        try:
            yield browser
        finally:
            browser.close()


class WatchedPage:
    """A new page of ``browser`` whose console errors and page errors are collected."""

    def __init__(self, browser, width: int = 1400, height: int = 900):
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        self.page.close()


def wait_for_plots(page, timeout_ms: float = 60_000) -> str:
    """Wait until a tuner page has drawn its plots; return what it set (a count, or
    "error")."""
    page.wait_for_function("document.body.dataset.plotsDrawn !== undefined",
                           timeout=timeout_ms)
    return page.evaluate("document.body.dataset.plotsDrawn")
