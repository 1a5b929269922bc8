"""The narrow contract between codeexec and a sandbox.

A sandbox takes a :class:`RunRequest` (a command, files to place in an empty work
directory, stdin, limits) and returns a :class:`RunOutcome` (what it *measured*). It
does not judge: the runner turns measurements into verdicts, the same way for every
backend. A third party's sandbox implements :class:`Sandbox` and registers its class in
the entry-point group ``codeexec.sandboxes``; the conformance suite in
:mod:`codeexec.testing` tells whether it keeps the promises below.

Every run must: enforce and report CPU time, wall time, memory (a cgroup, not only
RLIMIT_AS), pids, output and file size; leave the program without network unless
``limits.network``; keep the host file system unwritable and host secrets unreadable,
with a scrubbed environment; keep the program from signalling or seeing processes
outside its run; leave no process and no scratch file behind when it ends.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from .._model import File, Limits, str_tuple

__all__ = ["Capability", "RunOutcome", "RunRequest", "Sandbox", "Stdio"]


class Capability:
    """Names of the protections and features a sandbox may declare.

    Isolation guarantees are not optional for a production backend; a backend that
    cannot give one on this host says so in ``Sandbox.missing`` with the reason.
    """

    MEMORY_CGROUP = "memory_cgroup"  # memory limit and peak over all processes (cgroup)
    CPU_ACCOUNTING = "cpu_accounting"  # CPU time over all processes, orphans included
    PIDS_LIMIT = "pids_limit"  # processes+threads capped for the whole run
    PID_NAMESPACE = "pid_namespace"  # cannot see or signal processes outside the run
    NETWORK_ISOLATION = "network_isolation"  # no network unless limits.network
    READONLY_HOST = "readonly_host"  # host file system is not writable
    UID_ISOLATION = "uid_isolation"  # unprivileged uid, distinct per concurrent run
    KILL_ALL = "kill_all"  # every process of a run is gone when it ends
    NETWORK_OPTIONAL = "network_optional"  # limits.network=True gives real network
    SECCOMP = "seccomp"  # dangerous system calls are refused

    ISOLATION = frozenset(
        {
            MEMORY_CGROUP,
            CPU_ACCOUNTING,
            PIDS_LIMIT,
            PID_NAMESPACE,
            NETWORK_ISOLATION,
            READONLY_HOST,
            UID_ISOLATION,
            KILL_ALL,
        }
    )


def _files(value: Iterable[File]) -> tuple[File, ...]:
    return tuple(value)


class Stdio:
    """A run's stdin and stdout as file descriptors (pipe ends to another run, for
    interactive judging) instead of bytes in and a capture out.

    The run owns them: the sandbox closes them once the program has them (so the other
    side sees end-of-file when the program ends), or when the run ends without
    starting. :meth:`close` is idempotent and safe from any thread.
    """

    def __init__(self, stdin: int, stdout: int) -> None:
        self._fds: tuple[int, int] | None = (stdin, stdout)
        self._lock = threading.Lock()

    @property
    def fds(self) -> tuple[int, int]:
        """(stdin, stdout); raises once closed."""
        fds = self._fds
        if fds is None:
            raise ValueError("this run's stdio was closed")
        return fds

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, None
        for fd in fds or ():
            os.close(fd)

    def __repr__(self) -> str:
        return f"Stdio({self._fds})"


@attrs.frozen(kw_only=True)
class RunRequest:
    """One program run: ``argv`` executed in a fresh work directory holding ``files``.

    ``argv[0]`` is an absolute path or a path relative to the work directory. The
    program's environment is ``env`` and nothing else, except that the sandbox sets
    ``HOME`` to the work directory when ``env`` has none.
    ``collect`` names files (glob patterns, relative to the work dir) to bring back,
    for example a compiled binary. ``toolchain`` lists host directories the program
    needs to read (a backend that builds its own root file system mounts them).
    ``language`` names the language whose tools ``argv`` runs, if any. When
    ``cancel`` is set while the program runs, the sandbox kills it (within about 50 ms)
    and reports ``killed_for="cancelled"``.
    """

    argv: tuple[str, ...] = attrs.field(converter=str_tuple)
    files: tuple[File, ...] = attrs.field(default=(), converter=_files)
    stdin: bytes = b""
    env: Mapping[str, str] = attrs.field(factory=dict)
    limits: Limits = attrs.field(factory=Limits)
    collect: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    toolchain: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    #: The language whose toolchain runs ("" when none): a sandbox with an image per
    #: language picks by it.
    language: str = ""
    cancel: threading.Event | None = attrs.field(default=None, eq=False, repr=False)
    #: stdin and stdout as pipe ends (``stdin`` bytes are then unused, nothing is
    #: captured): only through a sandbox's ``run_together``.
    stdio: Stdio | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class RunOutcome:
    """What the sandbox measured. ``killed_for`` says which limit made it kill the run."""

    exit_code: int | None = None
    signal: int | None = None
    cpu_time: float = 0.0
    wall_time: float = 0.0
    memory_peak: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    oom_killed: bool = False
    memory_limit_hit: bool = False
    #: Killed for time while its memory kept meeting the limit (stalled there).
    stalled_at_memory_limit: bool = False
    #: "cpu", "wall", "output", "cancelled" or None
    killed_for: str | None = None
    collected: Mapping[str, bytes] = attrs.field(factory=dict)
    #: The sandbox failed to run the program at all (becomes internal_error).
    error: str | None = None


@runtime_checkable
class Sandbox(Protocol):
    """What codeexec needs of a sandbox backend."""

    #: The short name, also the entry-point name: "process", "nsjail", "docker".
    name: str

    @property
    def version(self) -> str:
        """Identity of the backend and its configuration, part of the fingerprint."""
        ...

    @property
    def capabilities(self) -> frozenset[str]:
        """The :class:`Capability` names this sandbox provides on this host."""
        ...

    @property
    def missing(self) -> Mapping[str, str]:
        """Capability name → why this host cannot provide it."""
        ...

    @property
    def concurrency(self) -> int:
        """How many runs it executes at once (more callers wait)."""
        ...

    def run(self, request: RunRequest) -> RunOutcome:
        """Execute one program and measure it. Thread-safe."""
        ...

    # Optional: a sandbox that has it can judge interactive problems.
    #
    # def run_together(self, requests: Sequence[RunRequest]) -> list[RunOutcome]:
    #     """Run these programs at the same time, each in a slot of its own, taking
    #     the slots all at once (two callers never hold one each and wait for the
    #     other's). Their ``stdio`` connects them."""

    def close(self) -> None:
        """Stop every process and remove every resource the sandbox made."""
        ...
