"""The host side of one run, shared by the sandboxes whose runs start elsewhere (a slot
server, a container's init): read the output while the program runs, capping it as it
reads so a flood never deadlocks; enforce wall time, and CPU time from the cgroup;
ask the other side to kill when a limit is hit; then turn what it reported and what
the cgroup measured into a :class:`~codeexec.backends.RunOutcome`.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import select
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from .._errors import SandboxError
from .._model import Limits, cpu_count
from ._cgroups import CgroupUsage, Slot
from ._protocol import RunOutcome, RunRequest, Stdio
from ._safefs import collect, write_all

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16
#: A killed run's pipes reach EOF at once; this bounds a drain that somehow does not.
_DRAIN_TIMEOUT = 2.0
# How often a run that can be cancelled looks at its cancel event (seconds).
_CANCEL_POLL = 0.05
#: How long the other side may take to report a run's end once it was asked to kill
#: it; past that it is broken (SandboxError: the slot or container is replaced).
EXIT_TIMEOUT = 10.0


class Control(Protocol):
    """The channel to whatever started the run."""

    def fileno(self) -> int: ...

    def request_kill(self) -> None:
        """Kill every process of the run now."""

    def receive(self) -> dict:
        """The next message (``{"op": "exited", ...}`` ends the run); raises
        :class:`~codeexec.SandboxError` when the other side is gone."""


@attrs.define
class Supervised:
    """What the host saw of one run."""

    exited: dict
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    killed_for: str | None
    #: Killed for time while its memory was still meeting the limit: a program stalled
    #: at its limit (the kernel reclaiming its own pages over and over, thrashing)
    #: rather than one that ran out of time for its own reasons.
    stalled_at_memory_limit: bool = False


class RunPipes:
    """The run's stdin (a memfd holding it) and its stdout and stderr pipes; or, with
    ``stdio``, its stdin and stdout from there (then nothing of stdout is read here).

    Hand :attr:`child` to whatever starts the program, then call :meth:`handed` so we
    hold no write end (the pipes reach EOF when the run's processes are gone);
    :meth:`close` (or leaving the ``with`` block) closes the rest.
    """

    def __init__(self, stdin: bytes, stdio: Stdio | None = None) -> None:
        self._fds: list[int] = []
        self._stdio = stdio
        try:
            self.stdin = self._keep(os.memfd_create("stdin", os.MFD_CLOEXEC))
            self.out_r, self.out_w = (self._keep(fd) for fd in os.pipe2(os.O_CLOEXEC))
            self.err_r, self.err_w = (self._keep(fd) for fd in os.pipe2(os.O_CLOEXEC))
            write_all(self.stdin, stdin)
            os.lseek(self.stdin, 0, os.SEEK_SET)
        except BaseException:
            self.close()
            raise

    def _keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    @property
    def child(self) -> list[int]:
        """The program's stdin, stdout and stderr."""
        if self._stdio is not None:
            stdin, stdout = self._stdio.fds
            return [stdin, stdout, self.err_w]
        return [self.stdin, self.out_w, self.err_w]

    def handed(self) -> None:
        for fd in (self.stdin, self.out_w, self.err_w):
            if fd in self._fds:
                self._fds.remove(fd)
                os.close(fd)
        if self._stdio is not None:
            self._stdio.close()

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        if self._stdio is not None:
            self._stdio.close()

    def __enter__(self) -> RunPipes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def supervise(
    request: RunRequest, out_r: int, err_r: int, control: Control, cgroup: Slot | None
) -> Supervised:
    """Watch one run until it exited and its pipes are drained."""
    limits = request.limits
    # poll, not selectors: no epoll fd to create and close per run.
    poller = select.poll()
    control_fd = control.fileno()
    names = {out_r: "stdout", err_r: "stderr", control_fd: "control"}
    for fd in names:
        poller.register(fd, select.POLLIN)
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    truncated = {"stdout": False, "stderr": False}
    kept = 0
    killed_for: str | None = None
    exited: dict | None = None
    start = time.monotonic()
    wall_deadline = start + limits.effective_wall_time
    next_cpu_check = start + min(limits.cpu_time, 0.05)
    drain_deadline = math.inf
    open_pipes = 2
    ncpu = cpu_count()

    kill_deadline = math.inf
    stalled = False

    def kill(reason: str) -> None:
        nonlocal killed_for, kill_deadline, stalled
        if killed_for is None:
            killed_for = reason
            kill_deadline = time.monotonic() + EXIT_TIMEOUT
            if reason in ("cpu", "wall") and cgroup is not None:
                stalled = cgroup.at_limit()
        if exited is None:
            control.request_kill()

    while exited is None or open_pipes:
        now = time.monotonic()
        if exited is None:
            if now >= wall_deadline and killed_for is None:
                kill("wall")
            if cgroup is not None and cgroup.sample_interval is not None:
                cgroup.sample()
            if cgroup is not None and now >= next_cpu_check and killed_for is None:
                used = cgroup.cpu_time()
                if used > limits.cpu_time:
                    kill("cpu")
                # CPU time grows at most ncpu seconds per second of wall time.
                next_cpu_check = now + max(0.005, (limits.cpu_time - used) / ncpu)
            timeout = max(0.0, min(wall_deadline, next_cpu_check) - now)
            if cgroup is not None and cgroup.sample_interval is not None:
                timeout = min(timeout, cgroup.sample_interval)
            if request.cancel is not None:
                if request.cancel.is_set() and killed_for is None:
                    kill("cancelled")
                timeout = min(timeout, _CANCEL_POLL)
            if killed_for is not None:
                if now >= kill_deadline:
                    raise SandboxError(
                        f"the run of {request.argv[0]} was not reported ended"
                        f" {EXIT_TIMEOUT:.0f}s after it was killed"
                    )
                timeout = 0.05
        else:
            if now >= drain_deadline:
                log.warning("output pipes still open after the run of %s", request.argv[0])
                break
            timeout = drain_deadline - now
        for fd, _ in poller.poll(timeout * 1000):
            name = names[fd]
            if name == "control":
                msg = control.receive()
                if msg.get("op") == "exited":
                    exited = msg
                    poller.unregister(fd)
                    drain_deadline = time.monotonic() + _DRAIN_TIMEOUT
                continue
            data = os.read(fd, _READ_CHUNK)
            if not data:
                poller.unregister(fd)
                open_pipes -= 1
                continue
            room = limits.output - kept
            if len(data) > room:
                data = data[: max(room, 0)]
                truncated[name] = True
                kill("output")
            kept += len(data)
            if data:
                chunks[name].append(data)
    assert exited is not None
    return Supervised(
        exited=exited,
        stdout=b"".join(chunks["stdout"]),
        stderr=b"".join(chunks["stderr"]),
        stdout_truncated=truncated["stdout"],
        stderr_truncated=truncated["stderr"],
        killed_for=killed_for,
        stalled_at_memory_limit=stalled,
    )


def outcome(
    request: RunRequest,
    seen: Supervised,
    usage: CgroupUsage | None,
    collected: dict[str, bytes],
) -> RunOutcome:
    """The run's outcome from what was seen and measured."""
    exited = seen.exited
    if "spawn_error" in exited:
        return RunOutcome(error=f"could not start {request.argv[0]}: {exited['spawn_error']}")
    if exited.get("init_died") and not (usage and usage.oom_killed):
        # Not the OOM killer: nothing inside a jail or container can kill its init.
        return RunOutcome(error="the sandbox's init died during the run")
    status = exited["status"]
    cpu_time = usage.cpu_time if usage else exited["utime"] + exited["stime"]
    return RunOutcome(
        exit_code=os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        cpu_time=cpu_time,
        wall_time=exited["wall_time"],
        memory_peak=_memory_peak(usage, exited["maxrss"]),
        stdout=seen.stdout,
        stderr=seen.stderr,
        stdout_truncated=seen.stdout_truncated,
        stderr_truncated=seen.stderr_truncated,
        oom_killed=usage.oom_killed if usage else False,
        memory_limit_hit=usage.memory_limit_hit if usage else False,
        stalled_at_memory_limit=seen.stalled_at_memory_limit,
        killed_for=seen.killed_for or ("cpu" if cpu_time > request.limits.cpu_time else None),
        collected=collected,
    )


def _memory_peak(usage: CgroupUsage | None, maxrss: int) -> int:
    """The group's peak; the main process's own (``maxrss``, which the kernel keeps)
    where there is no group, or where the group's is a sampled lower bound."""
    if usage is None:
        return maxrss
    return max(usage.memory_peak, maxrss) if usage.peak_sampled else usage.memory_peak


def finish(
    request: RunRequest, seen: Supervised, cgroup: Slot | None, workdir: Callable[[], int]
) -> RunOutcome:
    """The outcome of a supervised run: what the cgroup measured over it and the files
    it asked to collect from its work dir (``workdir()`` opens it for the host; the
    program controlled that tree, so it is read through :mod:`._safefs` only)."""
    if "spawn_error" in seen.exited:
        return outcome(request, seen, None, {})
    usage = cgroup.end() if cgroup is not None else None
    collected: dict[str, bytes] = {}
    if request.collect:
        fd = workdir()
        try:
            collected = collect(fd, request.collect)
        except OSError as exc:
            return RunOutcome(error=f"could not collect {', '.join(request.collect)}: {exc}")
        finally:
            os.close(fd)
    return outcome(request, seen, usage, collected)


def run_rlimits(
    limits: Limits, *, nproc_extra: int | None, cgroup: bool
) -> list[tuple[int, int, int]]:
    """(resource, soft, hard) for one run. ``nproc_extra``: the processes besides the
    run's that share its uid (None: the uid is shared more widely, no RLIMIT_NPROC);
    ``cgroup``: whether a cgroup holds the run's memory (else RLIMIT_AS must)."""
    # RLIMIT_CPU is whole seconds and per process. With a cgroup, whose all-process
    # CPU time is polled precisely, it is a backstop; without one it is all there
    # is: SIGXCPU at the soft limit, SIGKILL a second later.
    cpu = math.ceil(limits.cpu_time)
    cpu_soft = cpu + 1 if cgroup else cpu
    stack = min(limits.memory, 256 * 1024 * 1024)
    out = [
        (resource.RLIMIT_CPU, cpu_soft, cpu + 1),
        (resource.RLIMIT_FSIZE, limits.file_size, limits.file_size),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_STACK, stack, stack),
        (resource.RLIMIT_NOFILE, 1024, 1024),
        (resource.RLIMIT_MEMLOCK, 0, 0),
        (resource.RLIMIT_MSGQUEUE, 0, 0),
    ]
    if nproc_extra is not None:
        nproc = limits.pids + nproc_extra
        out.append((resource.RLIMIT_NPROC, nproc, nproc))
    if not cgroup:
        # No cgroup: the per-process address-space cap is all there is.
        space = (
            limits.memory
            if limits.address_space is None
            else min(limits.memory, limits.address_space)
        )
        out.append((resource.RLIMIT_AS, space, space))
    elif limits.address_space is not None:
        out.append((resource.RLIMIT_AS, limits.address_space, limits.address_space))
    return out
