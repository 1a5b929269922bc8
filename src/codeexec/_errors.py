"""The one exception hierarchy of codeexec.

A failed *user program* is never an exception: it is a :class:`~codeexec.Result`
with a verdict. Exceptions are for bad input (raised before anything runs) and for
infrastructure that failed.

::

    CodeExecError
    ├── SubmissionError (ValueError)        bad input, raised before anything runs
    │   ├── UnknownLanguageError (LookupError)
    │   └── LimitsError
    ├── ConfigurationError (ValueError)     an Executor/Store/... option it cannot use
    ├── FormatError (ValueError)            a dict or JSON that codeexec did not write
    ├── ToolchainError                       a language's compiler/interpreter is missing
    ├── SandboxError                         a sandbox failed to do its job
    │   ├── SandboxUnavailableError          the backend cannot run on this host (with why)
    │   └── UnknownSandboxError (LookupError)
    ├── CacheError                           a cache tier failed
    ├── StorageError                         a store failed
    │   ├── StorageConfigError (Configuration-  unknown URL scheme, bad option, bad id
    │   │                       Error)       (nothing stored)
    │   ├── StorageUnavailableError          a database or bucket cannot be reached
    │   ├── StoreFullError                   the write-behind queue stayed full
    │   └── RecordNotFoundError (KeyError)   no stored submission has that id
    ├── JobError
    │   ├── JobTimeout (TimeoutError)        Job.result(timeout) ran out
    │   └── JobCancelled (concurrent.futures.CancelledError)  the job was cancelled
    └── DispatchError                        a job could not be queued
        ├── QueueFull                        the queue is at its bound (backpressure)
        └── RateLimited                      this user sends too much; retry_after says when
"""

from __future__ import annotations

import concurrent.futures

__all__ = [
    "CacheError",
    "CodeExecError",
    "ConfigurationError",
    "DispatchError",
    "FormatError",
    "JobCancelled",
    "JobError",
    "JobTimeout",
    "LimitsError",
    "QueueFull",
    "RateLimited",
    "SandboxError",
    "SandboxUnavailableError",
    "RecordNotFoundError",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailableError",
    "StoreFullError",
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


class ConfigurationError(CodeExecError, ValueError):
    """A part was configured with something it cannot use: a wrong type, an unknown
    option, a value out of range. Raised when the part is made, before anything runs."""


class FormatError(CodeExecError, ValueError):
    """A dict (or JSON document) given to a ``from_dict`` is not one ``to_dict`` made:
    a key is missing or unknown, or a value has the wrong type."""


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


class StorageConfigError(StorageError, ConfigurationError):
    """A store was configured with something it cannot use (raised before anything is
    written): an unknown URL scheme, a missing driver, a bad option."""


class StorageUnavailableError(StorageError):
    """A database, directory or bucket of a store cannot be reached or written."""


class StoreFullError(StorageError):
    """The write-behind queue stayed full for longer than the save's timeout."""


class RecordNotFoundError(StorageError, KeyError):
    """No stored submission has that id."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else "record not found"


class JobError(CodeExecError):
    """A submitted job failed or was cancelled."""


class JobTimeout(JobError, TimeoutError):
    """The job did not finish within the time given to ``Job.result``."""


class JobCancelled(JobError, concurrent.futures.CancelledError):
    """The job was cancelled (before it ran, or while it ran: its sandboxed run was
    stopped); it has no result. Also a ``concurrent.futures.CancelledError``."""


class DispatchError(CodeExecError):
    """A job could not be queued (nothing ran)."""


class QueueFull(DispatchError):
    """The queue holds as many jobs as it may; submit again later."""


class RateLimited(DispatchError):
    """One user's jobs are over their rate or their cap on queued jobs.

    ``retry_after`` is the number of seconds after which a submission may succeed."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
