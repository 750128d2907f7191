"""One exception hierarchy for the whole tool; each class carries its process exit code.

The CLI prints ``str(error)`` (and ``error.hint`` when set) and exits with ``error.exit_code``;
a traceback is shown only with ``--debug``.

Exit codes (also in README):
  1  unexpected internal error
  2  command-line usage (click)
  3  bad spec or lock file
  4  a source failed (registry, engine, archive, URL, VSIX)
  5  integrity failure (verify, unpack)
  6  storage: output exists, disk full, interrupted
  7  keys: unreadable key, wrong passphrase, a key the root does not list
  8  lab: no engine, debootstrap failed, a subnet clash, SSH never came up; a system
     package the demo or the lab needs is missing and cannot be installed here
  9  a host: unreachable, SSH refused, too little disk, a downgrade it refuses
 10  a playbook run failed (the host and task are named)
 11  busy: another deploy holds the inventory's lock
 12  the audit log does not verify (a record edited, reordered or deleted)
"""

from __future__ import annotations


class AirlockError(Exception):
    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class InternalError(AirlockError):
    """Any other exception (a bug, an OSError nothing turned into an AirlockError), reported
    in one line like the others: ``internal error: TYPE: message``. ``__cause__`` is it."""

    exit_code = 1

    def __init__(self, cause: Exception):
        text = " ".join(str(cause).split("\n")).strip()
        text = text if len(text) <= 1000 else text[:1000] + "…"
        super().__init__(f"internal error: {type(cause).__name__}" + (f": {text}" if text else ""),
                         hint="this is a bug in airlock: run it again as `airlock --debug …` "
                              "for the traceback, and send that with `airlock --version` to "
                              "the airlock maintainers")
        self.__cause__ = cause


class SpecError(AirlockError):
    """A bundle spec or lock file is invalid. Carries file and line when known."""

    exit_code = 3

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, hint: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        if field:
            where += f"{field}: "
        super().__init__(where + message, hint=hint)


class SourceError(AirlockError):
    """Fetching or reading an input failed: registry, engine, archive, URL, VSIX."""

    exit_code = 4


class LockDrift(SourceError):
    """The lock pins what the sources no longer serve, or they serve other bytes for it
    (Debian replaced a package with its security update): ``--update-lock`` resolves again."""


class ProblemsError(AirlockError):
    """An error that lists every finding (``problems``: dicts with file and problem)."""

    def __init__(self, message: str, problems: list[dict] | None = None, *,
                 hint: str | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []


class IntegrityError(ProblemsError):
    """Bytes are not what they claim to be. ``problems`` lists every finding."""

    exit_code = 5


class StorageError(AirlockError):
    """Output cannot be written: exists, disk full, interrupted."""

    exit_code = 6


class UsageError(AirlockError):
    """A command-line value is wrong (same code as click's own usage errors)."""

    exit_code = 2


class TrustError(AirlockError):
    """Keys and roots: unreadable key, wrong passphrase, a signer the root does not list."""

    exit_code = 7


class LabError(AirlockError):
    """The lab or the staging host: no engine, debootstrap failed, a subnet clash, SSH never
    came up, a Debian package it needs is missing and cannot be installed here."""

    exit_code = 8


class HostError(AirlockError):
    """A managed host cannot be used: unreachable, SSH refused, too little disk."""

    exit_code = 9


class DeployError(AirlockError):
    """A playbook run failed; the message names the host and the task."""

    exit_code = 10


class BusyError(AirlockError):
    """Another airlock run holds the lock on this inventory."""

    exit_code = 11


class AuditError(ProblemsError):
    """The audit log's hash chain is broken. ``problems`` lists every finding."""

    exit_code = 12
