"""Open a user's workbench the way a developer does: Debian's Chromium, headless, trusting
the site CA (and nothing else: certificate errors are not ignored), through the gateway.

The CA is trusted the way Chromium on Linux trusts one: an NSS database in the browser's
own home (``certutil``, Debian's libnss3-tools). Playwright (its Python package) drives the
browser; the time to a loaded workbench is from the navigation's start until VS Code's
workbench, its editor area and the explorer of the user's folder are on the page.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from installer import system_packages
from installer.errors import LabError

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def problems() -> list[str]:
    """What opening a browser needs that no Debian package gives (the packages it needs are
    the list's "browser"): Playwright, the Python package that drives it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ["the Python package playwright, for opening the workbenches: "
                "pip install 'airlock[lab]'"]
    return []


def _trust(home: Path, ca_file: Path) -> None:
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    for cmd in (["certutil", "-d", f"sql:{db}", "-N", "--empty-password"],
                ["certutil", "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "airlock site CA",
                 "-i", str(ca_file)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise LabError(f"certutil failed: {(r.stdout + r.stderr).strip()}")


def open_workbenches(urls: dict[str, str], ca_file: Path, shots: Path, timeout_s: float = 90,
                     say=print) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """For each user's URL: load it, wait for the workbench, screenshot it. Returns per
    user the seconds to a loaded workbench, the final URL, the page title, the HTTP status
    of the page and its security headers, the screenshot's path. Chromium and certutil are
    installed first if missing (see system_packages.ensure)."""
    system_packages.ensure(["browser"], say, problems())
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    shots.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="airlock-browser-") as tmp:
        home = Path(tmp)
        _trust(home, ca_file)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS,
                                        env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
            try:
                for user, url in urls.items():
                    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
                    page = ctx.new_page()
                    t0 = time.monotonic()
                    try:
                        resp = page.goto(url, wait_until="domcontentloaded",
                                         timeout=timeout_s * 1000)
                        page.wait_for_selector(".monaco-workbench .part.editor",
                                               state="visible", timeout=timeout_s * 1000)
                        page.wait_for_selector(".monaco-workbench .explorer-folders-view",
                                               state="visible", timeout=timeout_s * 1000)
                        seconds = time.monotonic() - t0
                    except PlaywrightError as e:
                        shot = shots / f"{user}-failed.png"
                        page.screenshot(path=str(shot))
                        raise LabError(f"{user}'s workbench at {url} did not load: "
                                       f"{str(e).splitlines()[0]}",
                                       hint=f"screenshot: {shot}") from None
                    shot = shots / f"{user}.png"
                    page.screenshot(path=str(shot))
                    results[user] = {
                        "url": url, "finalUrl": page.url, "title": page.title(),
                        "seconds": round(seconds, 2), "status": resp.status if resp else None,
                        "headers": dict(resp.headers) if resp else {},
                        "screenshot": str(shot),
                        "workbench": page.locator(".monaco-workbench").count(),
                    }
                    ctx.close()
            finally:
                browser.close()
    return results
