"""The Debian packages airlock uses on the machine it runs on, by purpose: the one list.

Each entry names a package and what shows it is installed: a command on PATH, a file (an
absolute path), or ``import MODULE`` for the Python running this. ``airlock demo`` checks
every purpose it will need before its first step and installs what is missing (as root on
Debian; otherwise it stops with the ``apt-get install`` line); the code-server build and
the browser check their purpose again when they run; ``tests/run.sh`` installs the union
the test suite needs::

    python3 -m installer.system_packages list                 # every purpose and package
    python3 -m installer.system_packages missing PURPOSE...   # not installed, one a line
    python3 -m installer.system_packages install PURPOSE...   # install them (root, Debian)

Standard library only: run.sh runs it with the system python3, before .venv exists.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from installer.errors import AirlockError, LabError, UsageError


@dataclass(frozen=True)
class Need:
    package: str
    present: str  # a command on PATH, an absolute path, or "import MODULE"

    def installed(self) -> bool:
        if self.present.startswith("import "):
            return importlib.util.find_spec(self.present.split()[1]) is not None
        if self.present.startswith("/"):
            return Path(self.present).exists()
        return shutil.which(self.present) is not None


@dataclass(frozen=True)
class Purpose:
    why: str
    needs: tuple[Need, ...]


def _purpose(why: str, *needs: tuple[str, str]) -> Purpose:
    return Purpose(why, tuple(Need(package, present) for package, present in needs))


PURPOSES: dict[str, Purpose] = {
    "reviewer": _purpose(
        "the reviewers' check with stock tools",
        ("openssh-client", "ssh-keygen"), ("coreutils", "sha256sum")),
    "mirror": _purpose(
        "a signed apt repository of a bundle's packages (mirror export, bundle import)",
        ("apt-utils", "apt-ftparchive"), ("gnupg", "gpg")),
    "npm": _purpose(
        "a spec's npm packages",
        ("npm", "npm")),
    "source-mirrors": _purpose(
        "a spec's Maven and Go content (Maven and the go command resolve it)",
        ("maven", "mvn"), ("golang-go", "go")),
    "engine": _purpose(
        "the lab's container engine, when none answers at DOCKER_HOST",
        ("docker.io", "dockerd"), ("docker.io", "docker")),
    "lab": _purpose(
        "the lab's Debian image and SSH to its hosts",
        ("debootstrap", "debootstrap"), ("openssh-client", "ssh")),
    "codeserver-build": _purpose(
        "building the lab's code-server image",
        ("build-essential", "g++"), ("build-essential", "make"), ("ripgrep", "rg"),
        ("debootstrap", "debootstrap"), ("npm", "npm"),
        # the headers code-server's native modules compile against
        ("libkrb5-dev", "/usr/include/krb5.h"), ("libx11-dev", "/usr/include/X11/Xlib.h"),
        ("libxkbfile-dev", "/usr/include/X11/extensions/XKBfile.h"),
        ("libsecret-1-dev", "/usr/include/libsecret-1/libsecret/secret.h")),
    "llama-build": _purpose(
        "compiling the lab's inference stand-in (llama.cpp, from llama-cpp-python's sdist)",
        ("cmake", "cmake"), ("build-essential", "g++"), ("build-essential", "make")),
    "browser": _purpose(
        "opening the workbenches in a browser",
        ("chromium", "/usr/bin/chromium"), ("libnss3-tools", "certutil")),
    "venv": _purpose(
        "making .venv with python3 -m venv",
        ("python3-venv", "import ensurepip")),
    "tests": _purpose(
        "the test suite's own tools",
        ("docker-registry", "docker-registry"), ("skopeo", "skopeo"), ("zstd", "zstd"),
        ("nginx-light", "nginx"), ("util-linux", "unshare"), ("curl", "curl"),
        ("openssl", "openssl"), ("git", "git"),
        # gitlab.rb checked with Ruby (GitLab checks it with its own)
        ("ruby", "ruby"),
        # the gateway's WAF rules checked and attacked with the real module and rule set
        ("libnginx-mod-http-modsecurity", "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"),
        ("modsecurity-crs", "/usr/share/modsecurity-crs/rules")),
}


def _check(purposes: Iterable[str]) -> list[str]:
    names = list(purposes)
    unknown = [p for p in names if p not in PURPOSES]
    if unknown:
        raise UsageError(f"unknown purpose {', '.join(unknown)}; one of: {', '.join(PURPOSES)}")
    return names


def missing(purposes: Iterable[str]) -> dict[str, list[str]]:
    """The packages not installed, by purpose (each package once, under the first purpose
    that needs it; purposes that lack nothing are left out)."""
    seen: set[str] = set()
    found: dict[str, list[str]] = {}
    for name in _check(purposes):
        for need in PURPOSES[name].needs:
            if need.package not in seen and not need.installed():
                seen.add(need.package)
                found.setdefault(name, []).append(need.package)
    return found


def install_line(packages: Iterable[str]) -> str:
    return "apt-get install --no-install-recommends " + " ".join(packages)


def package_of(present: str) -> str:
    """The package that gives a command or file the list names."""
    for purpose in PURPOSES.values():
        for need in purpose.needs:
            if need.present == present:
                return need.package
    raise KeyError(f"{present} is in no purpose of installer/system_packages.py")


def require(command: str, error: type[AirlockError] = LabError) -> str:
    """The path of a command the list names, or ``error`` naming the package to install."""
    path = shutil.which(command)
    if not path:
        raise error(f"{command} is not installed", hint=install_line([package_of(command)]))
    return path


def root(why: str) -> list[str]:
    """``[why]`` unless this process is root: a line for ``ensure``'s ``problems``."""
    return [] if os.geteuid() == 0 else [f"root, {why}"]


def _why_not_here() -> str | None:
    if not shutil.which("apt-get"):
        return "this is not a Debian host (no apt-get)"
    if os.geteuid() != 0:
        return "not root"
    return None


def ensure(purposes: Iterable[str], say: Callable[[str], object] = print,
           problems: Iterable[str] = ()) -> None:
    """Install what the purposes lack, one line per purpose saying what and why. When that
    cannot be done here (not root, not Debian), or ``problems`` names something missing
    that no Debian package gives, stop with all of it and the ``apt-get install`` line,
    having installed nothing."""
    lacking = missing(purposes)
    problems = list(problems)
    packages = [p for pkgs in lacking.values() for p in pkgs]
    why_not = _why_not_here() if packages else None
    if why_not or problems:
        items = [f"Debian packages for {PURPOSES[name].why}: {' '.join(pkgs)}"
                 for name, pkgs in lacking.items()]
        reason = f" (cannot install here: {why_not})" if why_not else ""
        hint = ("as root: " if why_not == "not root" else "") + install_line(packages)
        raise LabError(f"missing on this machine{reason}:\n  " + "\n  ".join(items + problems),
                       hint=hint if packages else None)
    if not packages:
        return
    for name, pkgs in lacking.items():
        say(f"installing Debian packages for {PURPOSES[name].why}: {' '.join(pkgs)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            raise LabError(f"{' '.join(cmd[:2])} failed:\n{(r.stdout + r.stderr)[-1500:]}",
                           hint=install_line(packages))


def main(argv: list[str]) -> int:
    usage = "usage: python3 -m installer.system_packages list | missing|install PURPOSE..."
    if not argv or argv[0] not in ("list", "missing", "install") \
            or (argv[0] != "list" and len(argv) < 2):
        print(usage, file=sys.stderr)
        return UsageError.exit_code
    try:
        if argv[0] == "list":
            for name, purpose in PURPOSES.items():
                pkgs = dict.fromkeys(n.package for n in purpose.needs)
                print(f"{name:<17} {' '.join(pkgs):<40} {purpose.why}")
        elif argv[0] == "missing":
            for pkgs in missing(argv[1:]).values():
                print("\n".join(pkgs))
        else:
            ensure(argv[1:], say=lambda m: print(f"== {m}", flush=True))
    except AirlockError as e:
        print(f"error: {e}" + (f"\nhint: {e.hint}" if e.hint else ""), file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
