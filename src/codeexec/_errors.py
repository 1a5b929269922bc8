"""The one exception hierarchy of codeexec.

A failed *user program* is never an exception: it is a :class:`~codeexec.Result`
with a verdict. Exceptions are for bad input (raised before anything runs) and for
infrastructure that failed.

::

    CodeExecError
    ├── SubmissionError (ValueError)        bad input, raised before anything runs
    │   ├── UnknownLanguageError (LookupError)
    │   └── LimitsError
    ├── ToolchainError                       a language's compiler/interpreter is missing
    ├── SandboxError                         a sandbox failed to do its job
    │   ├── SandboxUnavailableError          the backend cannot run on this host (with why)
    │   └── UnknownSandboxError (LookupError)
    ├── CacheError                           a cache tier failed
    ├── StorageError                         a store failed
    └── JobError
        └── JobTimeout (TimeoutError)        Job.result(timeout) ran out
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CodeExecError",
    "JobError",
    "JobTimeout",
    "LimitsError",
    "SandboxError",
    "SandboxUnavailableError",
    "StorageError",
    "SubmissionError",
    "ToolchainError",
    "UnknownLanguageError",
    "UnknownSandboxError",
]


class CodeExecError(Exception):
    """Root of every exception codeexec raises on purpose."""


class SubmissionError(CodeExecError, ValueError):
    """The submission (or a part of it) is invalid; nothing was run."""


class UnknownLanguageError(SubmissionError, LookupError):
    """No language of that name is registered."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = sorted(available)
        super().__init__(
            f"unknown language {name!r}; available: {', '.join(self.available) or 'none'}"
        )


class LimitsError(SubmissionError):
    """A limit is negative, zero where it must be positive, or not understood."""


class ToolchainError(CodeExecError):
    """A language is known but its compiler or interpreter is not usable here."""


class SandboxError(CodeExecError):
    """The sandbox itself failed (not the user's program)."""


class SandboxUnavailableError(SandboxError):
    """The sandbox cannot run on this host; ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"sandbox {name!r} is unavailable: {reason}")


class UnknownSandboxError(SandboxError, LookupError):
    """No sandbox of that name is built in or registered as an entry point."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = sorted(available)
        super().__init__(f"unknown sandbox {name!r}; available: {', '.join(self.available)}")


class CacheError(CodeExecError):
    """A cache tier failed."""


class StorageError(CodeExecError):
    """A store failed to save or load."""


class JobError(CodeExecError):
    """A submitted job failed or was cancelled."""


class JobTimeout(JobError, TimeoutError):
    """The job did not finish within the time given to ``Job.result``."""
