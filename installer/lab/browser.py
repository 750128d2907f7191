"""Open a user's workbench the way a developer does: Debian's Chromium, headless, trusting
the site CA (and nothing else: certificate errors are not ignored), through the gateway.

The CA is trusted the way Chromium on Linux trusts one: an NSS database in the browser's
own home (``certutil``, Debian's libnss3-tools). Playwright (its Python package) drives the
browser; the time to a loaded workbench is from the navigation's start until VS Code's
workbench, its editor area and the explorer of the user's folder are on the page.

Behind SSO the same clock includes the login, done as the user does it: Keycloak's login
form (user name, password), then TOTP: at the first login the set-up page (the secret
read from its "unable to scan?" view, the code computed with pyotp, as a phone app would),
afterwards the one-time code page.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from installer import system_packages
from installer.errors import LabError
from installer.fsutil import atomic_write

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


WORKBENCH = ".monaco-workbench .part.editor"
LOGIN_FORM = "#kc-form-login"
TOTP_SETUP = "#kc-totp-settings-form"
OTP_FORM = "#kc-otp-login-form"


def problems() -> list[str]:
    """What opening a browser needs that no Debian package gives (the packages it needs are
    the list's "browser"): Playwright, the Python package that drives it, and pyotp, which
    computes the TOTP codes a phone app would."""
    found = []
    for module, why in (("playwright.sync_api", "opening the workbenches"),
                        ("pyotp", "the TOTP codes of the SSO login")):
        try:
            __import__(module)
        except ImportError:
            found.append(f"the Python package {module.split('.')[0]}, for {why}: "
                         "pip install 'airlock[lab]'")
    return found


@contextmanager
def chromium(ca_file: Path) -> Iterator[Any]:
    """Debian's Chromium, headless, in a home of its own that trusts CA_FILE only."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="airlock-browser-") as tmp:
        home = Path(tmp)
        _trust(home, ca_file)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS,
                                  env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
            try:
                yield b
            finally:
                b.close()


def totp_code(account: dict[str, Any]) -> str:
    """The current TOTP code of ACCOUNT's secret; a code already used is never offered
    again (Keycloak refuses reuse): then it waits for the next period's. With
    ACCOUNT["used_file"], the last code used is kept there, for the next process."""
    import pyotp

    totp = pyotp.TOTP(account["totp"].replace(" ", ""))
    used = Path(account["used_file"]) if account.get("used_file") else None
    last = account.get("last_code")
    if last is None and used is not None and used.exists():
        last = used.read_text().strip()  # another process's login (a demo, then a test)
    code = totp.now()
    while code == last:
        time.sleep(totp.interval - time.time() % totp.interval + 0.2)
        code = totp.now()
    account["last_code"] = code
    if used is not None:
        used.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(used, code.encode(), mode=0o600)
    return code


def login(page, account: dict[str, Any], timeout_ms: float) -> list[str]:  # type: ignore[no-untyped-def]
    """Answer Keycloak's pages until the workbench shows: password, then TOTP (set up on
    the first login: the secret is kept in ACCOUNT["totp"]). Returns the steps taken."""
    steps: list[str] = []
    any_page = ", ".join([WORKBENCH, LOGIN_FORM, TOTP_SETUP, OTP_FORM])
    for _ in range(6):
        page.wait_for_selector(any_page, state="visible", timeout=timeout_ms)
        if page.locator(WORKBENCH).count():
            return steps
        if page.locator(LOGIN_FORM).count():
            if "password" in steps:
                raise LabError(f"Keycloak refused {account['user']}'s password: "
                               + _alert(page))
            page.fill("input[name=username]", account["user"])
            page.fill("input[name=password]", account["password"])
            _submit(page, "#kc-login", timeout_ms)
            steps.append("password")
        elif page.locator(TOTP_SETUP).count():
            if not page.locator("#kc-totp-secret-key").count():
                page.click("#mode-manual")
                page.wait_for_selector("#kc-totp-secret-key", timeout=timeout_ms)
            account["totp"] = page.inner_text("#kc-totp-secret-key").replace(" ", "").strip()
            page.fill("#totp", totp_code(account))
            page.fill("#userLabel", "airlock lab")
            _submit(page, "#saveTOTPBtn", timeout_ms)
            steps.append("totp-setup")
        else:
            if not account.get("totp"):
                raise LabError(f"Keycloak asks {account['user']} for a one-time code, and the "
                               "TOTP secret is not known here")
            if steps and steps[-1] == "otp":  # asked again: the code was refused; say why
                steps.append("refused: " + _alert(page))
            page.fill("input[name=otp]", totp_code(account))
            _submit(page, "#kc-login", timeout_ms)
            steps.append("otp")
    raise LabError(f"the login of {account['user']} did not reach the workbench: "
                   f"{', '.join(steps)}")


def _submit(page, button: str, timeout_ms: float) -> None:  # type: ignore[no-untyped-def]
    """Click a form's BUTTON and wait for the page it posts to (a check right after a bare
    click may still see the form it left)."""
    with page.expect_navigation(wait_until="domcontentloaded", timeout=timeout_ms):
        page.click(button)


def _alert(page) -> str:  # type: ignore[no-untyped-def]
    """The message Keycloak shows beside a refused input."""
    found = page.locator("#input-error-otp-code, #input-error, .pf-v5-c-alert, .alert-error")
    return found.first.inner_text().strip() if found.count() else "(no message shown)"


def _trust(home: Path, ca_file: Path) -> None:
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    for cmd in (["certutil", "-d", f"sql:{db}", "-N", "--empty-password"],
                ["certutil", "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "airlock site CA",
                 "-i", str(ca_file)]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise LabError(f"certutil failed: {(r.stdout + r.stderr).strip()}")


def evidence(page: Any, path: Path) -> Path | None:
    """A screenshot of PAGE at PATH where Chromium can take one (an error page sometimes
    cannot be captured: the failure it shows is said without it)."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.screenshot(path=str(path))
    except PlaywrightError:
        return None
    return path


def open_workbenches(urls: dict[str, str], ca_file: Path, shots: Path, timeout_s: float = 90,
                     say=print, accounts: dict[str, dict[str, Any]] | None = None,
                     cookies_out: list[dict[str, Any]] | None = None
                     ) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """For each user's URL: load it, log in where the gateway sends the browser to
    Keycloak (ACCOUNTS: user -> {user, password, totp}; the TOTP secret set up at a first
    login is written back), wait for the workbench, screenshot it. Returns per user the
    seconds to a loaded workbench (the login included), the login's steps, the final URL,
    the page title, the HTTP status of the first response and its headers, the
    screenshot's path; COOKIES_OUT, when given, gets the browser's cookies. Chromium and
    certutil are installed first if missing (see system_packages.ensure)."""
    system_packages.ensure(["browser"], say, problems())
    from playwright.sync_api import Error as PlaywrightError

    shots.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    with chromium(ca_file) as browser:
        for user, url in urls.items():
            ctx = browser.new_context(viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            t0 = time.monotonic()
            try:
                resp = page.goto(url, wait_until="domcontentloaded",
                                 timeout=timeout_s * 1000)
                steps = []
                if accounts and user in accounts:
                    steps = login(page, accounts[user], timeout_s * 1000)
                page.wait_for_selector(WORKBENCH,
                                       state="visible", timeout=timeout_s * 1000)
                page.wait_for_selector(".monaco-workbench .explorer-folders-view",
                                       state="visible", timeout=timeout_s * 1000)
                seconds = time.monotonic() - t0
            except PlaywrightError as e:
                shot = evidence(page, shots / f"{user}-failed.png")
                raise LabError(f"{user}'s workbench at {url} did not load: "
                               f"{str(e).splitlines()[0]}",
                               hint=f"screenshot: {shot}" if shot else None) from None
            shot = shots / f"{user}.png"
            page.screenshot(path=str(shot))
            results[user] = {
                "url": url, "finalUrl": page.url, "title": page.title(),
                "login": steps,
                "seconds": round(seconds, 2), "status": resp.status if resp else None,
                "headers": dict(resp.headers) if resp else {},
                "screenshot": str(shot),
                "workbench": page.locator(".monaco-workbench").count(),
            }
            if cookies_out is not None:
                cookies_out.extend(ctx.cookies())
            ctx.close()
    return results


def try_passwords(url: str, ca_file: Path, user: str, passwords: list[str],
                  timeout_s: float = 60, pause_s: float = 1.5) -> list[str]:
    """Submit Keycloak's login form at URL (reached through the gateway) once per password,
    PAUSE_S apart (as a person types: Keycloak locks faster-than-a-second failures as
    automated); returns the error Keycloak showed after each (empty where none was shown)."""
    seen: list[str] = []
    with chromium(ca_file) as b:
        page = b.new_context().new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        for i, pw in enumerate(passwords):
            if i:
                time.sleep(pause_s)
            page.wait_for_selector(LOGIN_FORM, timeout=timeout_s * 1000)
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", pw)
            page.click("#kc-login")
            page.wait_for_load_state("domcontentloaded", timeout=timeout_s * 1000)
            page.wait_for_selector(f"{LOGIN_FORM}, {TOTP_SETUP}, {OTP_FORM}",
                                   timeout=timeout_s * 1000)
            err = page.locator("#input-error, .pf-v5-c-alert__title, .kc-feedback-text")
            seen.append(err.first.inner_text().strip() if err.count() else "")
    return seen
