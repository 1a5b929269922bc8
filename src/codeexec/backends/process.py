"""The process sandbox: fork/exec under namespaces, a cgroup, rlimits and a spare uid.

The embedded default: it needs nothing but Linux and, for full isolation, root.
Each concurrent *slot* has a long-lived server process (:mod:`._forkserver`) that
joined the slot's cgroup and created the slot's namespaces once; a run is one fork of
that server. The host side here writes the work files, passes stdin/stdout/stderr to
the server, reads output while the program runs (capping it as it reads, so a flood
never deadlocks), enforces wall and CPU time, and turns the server's and the cgroup's
numbers into a :class:`~codeexec.backends.RunOutcome`.

What it gives depends on the host, and it says so (``capabilities`` / ``missing``):

- as root with cgroups: everything in :attr:`Capability.ISOLATION`;
- as root without usable cgroups: namespaces and uids, but memory is capped with
  RLIMIT_AS per process and CPU time is counted per process;
- not root: rlimits, a subreaper that kills descendants, nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping, Sequence

from .._errors import SandboxError, SandboxUnavailableError
from .._model import cpu_count
from .._units import parse_size
from . import _cgroups
from ._forkserver import recv, send
from ._jailinit import JailInit, jail_init
from ._protocol import Capability, RunOutcome, RunRequest
from ._safefs import open_dir, write_files
from ._supervise import RunPipes, finish, run_rlimits, supervise
from ._together import check_together, run_all
from ._uids import lease_uid

log = logging.getLogger(__name__)

__all__ = ["ProcessSandbox"]

_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_forkserver.py")
#: Slots run as leased uids from here up (see _uids). Pick a range no real user has.
DEFAULT_UID_BASE = 61_000
#: Mounted read-only in every jail's root, where they exist on the host.
BASE_MOUNTS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
#: Longest a slot server may take to start or to wipe a run's scratch.
_SERVER_TIMEOUT = 60.0


class _Slot:
    """Host-side handle of one slot: its server, socket, cgroup and uid."""

    def __init__(self, index: int, sandbox: ProcessSandbox) -> None:
        self.index = index
        self.sandbox = sandbox
        #: A uid of this slot's alone on this host, while the sandbox is open.
        self.lease = lease_uid(sandbox._uid_base) if sandbox._root else None
        self.uid = self.lease.uid if self.lease else None
        self.cgroup = sandbox._cgroups.slot(f"slot-{index}") if sandbox._cgroups else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr_tail: deque[bytes] = deque()
        self.stderr_thread: threading.Thread | None = None
        self.sock: socket.socket | None = None
        self.pid = 0
        self.ready = False
        self.run_sent = False
        self.workdir = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        sb = self.sandbox
        isolated = sb._isolated
        if isolated:
            self.workdir = "/tmp/work"
        else:
            self.workdir = os.path.join(sb._plain_root, f"slot-{self.index}", "work")
        host, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        config = {
            "isolated": isolated,
            "uid": self.uid,
            "gid": self.uid,
            "workdir": self.workdir,
            "scratch_size": sb._scratch_size,
            "cgroup_procs": list(self.cgroup.procs_files) if self.cgroup else [],
            "fd": server.fileno(),
            # posix_spawn needs the cgroup: what a run forks before its rlimits
            # are applied is held by the cgroup's limits instead.
            "spawner": isolated and self.cgroup is not None and sb._spawner,
            "jail": sb.jail_config(self.uid),
            "init": sb.init_config(),
        }
        try:
            self.proc = subprocess.Popen(
                # -E -s -P: no environment, user site or script dir leaks into the
                # server's imports (it needs the stdlib and python-prctl only).
                [sys.executable, "-E", "-s", "-P", "-B", _SERVER, json.dumps(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(server.fileno(),),
                cwd="/",
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
            )
        finally:
            server.close()
        self._drain_stderr()
        self.sock = host
        msg = self._expect("hello")
        self.pid = msg["pid"]
        self.ready = False
        self.wait_ready()

    def _expect(self, op: str) -> dict:
        """The next message, which must be ``op``; a server silent for
        ``_SERVER_TIMEOUT`` seconds is broken (SandboxError, the slot restarts)."""
        assert self.sock is not None
        while True:
            ready, _, _ = select.select([self.sock], [], [], _SERVER_TIMEOUT)
            if not ready:
                raise SandboxError(
                    f"process sandbox server of slot {self.index} did not answer"
                    f" within {_SERVER_TIMEOUT}s (waiting for {op!r})"
                )
            msg = self._recv()
            if msg.get("op") == "warnings":
                for warning in msg["warnings"]:
                    log.debug("slot %d: %s", self.index, warning)
                continue
            if msg.get("op") != op:
                raise SandboxError(f"process sandbox server: expected {op!r}, got {msg!r}")
            return msg

    def _recv(self) -> dict:
        assert self.sock is not None
        msg, fds = recv(self.sock)
        for fd in fds:
            os.close(fd)
        if msg is None:
            raise SandboxError(
                f"process sandbox server of slot {self.index} died: {self._stderr()}"
            )
        return msg

    def _drain_stderr(self) -> None:
        """Read the server's stderr (and its jails') as it comes, keeping the last
        few KiB for an error message: a pipe nobody reads fills up, and then every
        write to it (a jail start's warning) blocks."""
        assert self.proc is not None and self.proc.stderr is not None
        stream = self.proc.stderr
        tail: deque[bytes] = deque(maxlen=64)
        self.stderr_tail = tail

        def drain() -> None:
            with contextlib.suppress(OSError, ValueError):
                while chunk := stream.read1(4096):  # type: ignore[attr-defined]
                    tail.append(chunk)

        self.stderr_thread = threading.Thread(
            target=drain, name=f"codeexec-slot-{self.index}-stderr", daemon=True
        )
        self.stderr_thread.start()

    def _stderr(self) -> str:
        if self.proc is None:
            return ""
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(timeout=2)
        if self.stderr_thread is not None:
            self.stderr_thread.join(timeout=2)
        return b"".join(self.stderr_tail).decode(errors="replace").strip()[-2000:]

    def wait_ready(self) -> None:
        if not self.ready:
            self._expect("ready")
            self.ready = True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.stderr_thread is not None:
                self.stderr_thread.join(timeout=2)
                self.stderr_thread = None
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None
        self.ready = False

    # ------------------------------------------------------------------ one run

    def oom_outcome(self) -> RunOutcome | None:
        """The run's outcome when the OOM killer struck during it and took the slot's
        server too (or instead: without CAP_SYS_RESOURCE the server keeps OOM score 0,
        and with a limit below its own resident size it can be the biggest process
        in the group). The run met its memory limit; that is its verdict."""
        if self.cgroup is None:
            return None
        try:
            usage = self.cgroup.end()
        except OSError:
            return None
        if not usage.oom_killed:
            return None
        return RunOutcome(
            signal=9,
            cpu_time=usage.cpu_time,
            memory_peak=usage.memory_peak,
            oom_killed=True,
            memory_limit_hit=True,
        )

    def run(self, request: RunRequest) -> RunOutcome:
        if not self.alive():
            self.stop()
            self.start()
        self.wait_ready()
        self.ready = False
        try:
            self._write_files(request)
        except OSError as exc:
            self._reset()
            return RunOutcome(error=f"could not write the work files: {exc}")
        self.run_sent = False
        try:
            return self._execute(request)
        finally:
            # The server wipes the scratch on its own after a run, unless it was
            # asked to keep it for collecting files, or never got the run at all.
            if self.sock is not None and (request.collect or not self.run_sent):
                with contextlib.suppress(OSError):
                    self._reset()

    def _reset(self) -> None:
        assert self.sock is not None
        send(self.sock, {"op": "reset"})

    def open_workdir(self) -> int:
        """The run's work dir, as the host reaches it (never through a link the
        program made: see _safefs)."""
        if self.sandbox._isolated:
            return open_dir(f"/proc/{self.pid}/root", self.workdir)
        return open_dir(
            self.sandbox._plain_root, os.path.relpath(self.workdir, self.sandbox._plain_root)
        )

    def _write_files(self, request: RunRequest) -> None:
        fd = self.open_workdir()
        try:
            write_files(fd, request.files, self.uid)
        finally:
            os.close(fd)

    def _rlimits(self, request: RunRequest) -> list[tuple[int, int, int]]:
        # The uid is this slot's alone, so RLIMIT_NPROC counts only this run's tasks
        # and the slot's server (its real uid is the slot's too, for posix_spawn).
        return run_rlimits(
            request.limits,
            nproc_extra=1 if self.uid is not None else None,
            cgroup=self.cgroup is not None,
        )

    def _execute(self, request: RunRequest) -> RunOutcome:
        limits = request.limits
        assert self.sock is not None
        with RunPipes(request.stdin, request.stdio) as pipes:
            try:
                if self.cgroup is not None:
                    # The slot's server (and the parent it forked from) live in the
                    # group too, and whatever the sandbox keeps there (a jail).
                    resident = 2 + self.sandbox.resident_processes
                    self.cgroup.set_limits(limits.memory, limits.pids + resident)
                    self.cgroup.begin()
                msg = {
                    "op": "run",
                    "argv": list(request.argv),
                    "env": {"HOME": self.workdir, **request.env},
                    "cwd": self.workdir,
                    "rlimits": self._rlimits(request),
                    "network": limits.network,
                    "keep": bool(request.collect),
                    "mounts": list(self.sandbox.extra_mounts(request)),
                }
                send(self.sock, msg, pipes.child)
                self.run_sent = True
            finally:
                pipes.handed()
            try:
                seen = supervise(
                    request, pipes.out_r, pipes.err_r, _ServerControl(self), self.cgroup
                )
            except SandboxError:
                self.stop()
                raise
            return finish(request, seen, self.cgroup, self.open_workdir)


class _ServerControl:
    """A slot server's socket, as :func:`supervise` talks to it."""

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot

    def fileno(self) -> int:
        assert self.slot.sock is not None
        return self.slot.sock.fileno()

    def request_kill(self) -> None:
        with contextlib.suppress(OSError):
            send(self.slot.sock, {"op": "kill"})  # type: ignore[arg-type]

    def receive(self) -> dict:
        return self.slot._recv()


def _probe_namespaces() -> str:
    """Return '' when this process may create the namespaces the server needs."""
    try:
        pid = os.fork()
    except OSError as exc:
        return f"fork failed: {exc}"
    if pid == 0:
        code = 1
        try:
            from ._forkserver import (
                CLONE_NEWIPC,
                CLONE_NEWNET,
                CLONE_NEWNS,
                CLONE_NEWPID,
                CLONE_NEWUTS,
                unshare,
            )

            unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return "" if os.waitstatus_to_exitcode(status) == 0 else "unshare of namespaces was refused"


class ProcessSandbox:
    """Runs programs as forks of per-slot servers, isolated as far as the host allows.

    :param slots: runs at once (default: one per core). More callers wait for a slot.
    :param uid_base: slots run as uids/gids from ``uid_base`` up, each leased host-wide
        for the sandbox's life (root only; see :mod:`._uids`).
    :param scratch_size: size of each run's tmpfs /tmp (which holds the work dir),
        /var/tmp and /dev/shm; also counted against the run's memory limit.
    :param isolate: force (True) or forbid (False) namespaces; default: when root.
    :param spawner: start runs with posix_spawn where the host allows it (isolated,
        with cgroups); False always hands runs to a pre-forked copy of the server.
    """

    name = "process"

    def __init__(
        self,
        *,
        slots: int | None = None,
        uid_base: int = DEFAULT_UID_BASE,
        scratch_size: int | str = "256M",
        isolate: bool | None = None,
        spawner: bool = True,
        init: bool | None = None,
    ) -> None:
        self._slots_wanted = slots or cpu_count()
        if self._slots_wanted < 1:
            raise ValueError("slots must be at least 1")
        self._uid_base = uid_base
        self._spawner = spawner
        self._scratch_size = parse_size(scratch_size, what="scratch_size")
        self._root = os.geteuid() == 0
        self._missing: dict[str, str] = {}
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailableError("process", "needs Linux")
        try:
            import prctl  # noqa: F401
        except ImportError as exc:
            raise SandboxUnavailableError(
                "process", f"python-prctl is not importable ({exc}); pip install python-prctl"
            ) from exc
        if isolate is None:
            isolate = self._root
        self._isolated = bool(isolate)
        if self._isolated:
            if not self._root:
                raise SandboxUnavailableError("process", "isolate=True needs root")
            reason = _probe_namespaces()
            if reason:
                raise SandboxUnavailableError("process", reason)
        self._cgroups, cg_reason = _cgroups.detect() if self._root else (None, "not root")
        if self._cgroups is None:
            self._missing[Capability.MEMORY_CGROUP] = (
                f"no cgroup ({cg_reason}): memory is capped per process (RLIMIT_AS)"
            )
            self._missing[Capability.CPU_ACCOUNTING] = (
                f"no cgroup ({cg_reason}): CPU time is per process (RLIMIT_CPU, whole"
                " seconds) and what orphans use is not counted"
            )
            self._missing[Capability.PIDS_LIMIT] = (
                f"no cgroup ({cg_reason}): processes are capped per uid (RLIMIT_NPROC)"
                if self._root
                else f"no cgroup ({cg_reason}): processes are not capped"
            )
        if not self._isolated:
            why = "not root" if not self._root else "isolate=False"
            for cap in (
                Capability.PID_NAMESPACE,
                Capability.NETWORK_ISOLATION,
                Capability.READONLY_HOST,
            ):
                self._missing[cap] = why
            if self._cgroups is None:
                self._missing[Capability.KILL_ALL] = (
                    f"{why} and no cgroup: a process that leaves the run's process tree"
                    " can outlive it"
                )
        if not self._root:
            self._missing[Capability.UID_ISOLATION] = "not root: runs use the caller's uid"
        #: The jail init (a compiled _jailinit.c) and the seccomp filter it gives runs.
        self._jail_init: JailInit | None = None
        if init or (init is None and self._isolated):
            try:
                if not self._isolated:
                    raise SandboxUnavailableError(
                        self.name, "runs are not isolated (not root, or isolate=False)"
                    )
                self._jail_init = jail_init()
            except (SandboxUnavailableError, OSError, subprocess.SubprocessError) as exc:
                if init:
                    raise SandboxUnavailableError(self.name, str(exc)) from exc
                log.warning("%s sandbox without its jail init (%s)", self.name, exc)
        self._init = self._jail_init.path if self._jail_init else ""
        if self._jail_init is None:
            self._missing[Capability.SECCOMP] = (
                "no jail init here (not isolated, no C compiler or no libseccomp):"
                " runs get no seccomp filter"
            )
        self._plain_root = ""
        if not self._isolated:
            import tempfile

            self._plain_root = tempfile.mkdtemp(prefix="codeexec-process-")
            os.chmod(self._plain_root, 0o711)  # slot uids must traverse to their work dir
        self._pool: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._all = [_Slot(i, self) for i in range(self._slots_wanted)]
        for slot in self._all:
            self._pool.put(slot)
        self._closed = False
        self._lock = threading.Lock()
        #: Held while taking several slots at once (see run_together).
        self._together = threading.Lock()

    # ------------------------------------------------------------------ hooks

    def init_config(self) -> dict | None:
        """The jail init every run starts from (None: runs start from the server)."""
        if not self._init:
            return None
        assert self._jail_init is not None
        return {
            "binary": self._jail_init.path,
            "seccomp": self._jail_init.seccomp.hex(),
            # A root of only these (and the run's toolchain directories), like nsjail's.
            "mounts": [m for m in BASE_MOUNTS if os.path.isdir(m)],
            "devices": [d for d in DEVICES if os.path.exists(d)],
        }

    def jail_config(self, uid: int | None) -> dict | None:
        """How slot servers wrap each run (None: they do not; see NsjailSandbox)."""
        return None

    def extra_mounts(self, request: RunRequest) -> tuple[str, ...]:
        """Toolchain directories outside the base mounts that a run's jail needs (a
        ``bin`` brings its parent, where its libraries live); none without a jail,
        where the whole host is visible, read-only."""
        return self._toolchain_mounts(request) if self._init else ()

    def _toolchain_mounts(self, request: RunRequest) -> tuple[str, ...]:
        extra = set()
        for directory in request.toolchain:
            real = os.path.realpath(directory)
            if os.path.basename(real) == "bin":
                real = os.path.dirname(real)
            if not any(real == m or real.startswith(m + "/") for m in BASE_MOUNTS):
                extra.add(real)
        return tuple(sorted(extra))

    @property
    def resident_processes(self) -> int:
        """Processes of a slot besides its server and the run's own, which the slot's
        pids limit must leave room for: a jail's launcher and its init."""
        return 2 if self._init else 0

    # ------------------------------------------------------------------ protocol

    @property
    def version(self) -> str:
        mode = "isolated" if self._isolated else "plain"
        cg = f"cgroup-v{self._cgroups.version}" if self._cgroups else "no-cgroup"
        # The init and the seccomp policy decide what a run may do: part of the identity.
        start = f"init-{self._jail_init.digest}" if self._jail_init else "spawn"
        # The scratch space decides whether a program that writes files fits.
        return f"process/2 {mode} {cg} {start} scratch-{self._scratch_size}"

    @property
    def capabilities(self) -> frozenset[str]:
        everything = Capability.ISOLATION | {Capability.NETWORK_OPTIONAL, Capability.SECCOMP}
        return frozenset(everything - set(self._missing))

    @property
    def missing(self) -> Mapping[str, str]:
        return dict(self._missing)

    @property
    def concurrency(self) -> int:
        return self._slots_wanted

    def warm(self) -> None:
        """Start every slot's server now rather than at its first run."""
        slots = [self._pool.get() for _ in self._all]
        try:
            for slot in slots:
                if not slot.alive():
                    slot.start()
        finally:
            for slot in slots:
                self._pool.put(slot)

    def run(self, request: RunRequest) -> RunOutcome:
        """Run one program in a free slot (waiting for one) and measure it."""
        self._check(request)
        slot = self._pool.get()
        try:
            return self._run_on(slot, request)
        finally:
            self._pool.put(slot)

    def run_together(self, requests: Sequence[RunRequest]) -> list[RunOutcome]:
        """Run these programs at the same time, each in a slot of its own (taken all
        at once: two callers never hold one each and wait for the other's)."""
        try:
            for request in requests:
                self._check(request)
            check_together(requests, self._slots_wanted, self.name)
            with self._together:
                slots = [self._pool.get() for _ in requests]
        except BaseException:
            for request in requests:
                if request.stdio is not None:
                    request.stdio.close()
            raise
        try:
            runs = [
                functools.partial(self._run_on, s, r) for s, r in zip(slots, requests, strict=True)
            ]
            return run_all(runs, requests)
        finally:
            for slot in slots:
                self._pool.put(slot)

    def _check(self, request: RunRequest) -> None:
        if self._closed:
            raise SandboxError("the process sandbox is closed")
        if not request.argv or not request.argv[0]:
            raise SandboxError("argv is empty")

    def _run_on(self, slot: _Slot, request: RunRequest) -> RunOutcome:
        if self._closed:
            raise SandboxError("the process sandbox is closed")
        try:
            return slot.run(request)
        except Exception as exc:  # noqa: BLE001 - never lose the slot to a run
            # The slot's server is broken: restart it next time, report this run.
            oom = slot.oom_outcome() if slot.run_sent else None
            slot.stop()
            if oom is not None:
                return oom
            if not isinstance(exc, OSError) or exc.errno not in (
                errno.EPIPE,
                errno.ECONNRESET,
            ):
                log.warning("process sandbox slot %d failed: %s", slot.index, exc, exc_info=True)
            return RunOutcome(error=f"sandbox failure: {exc}")

    def close(self) -> None:
        """Stop every server (their runs die with them) and remove the cgroups."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._all:
            slot = self._pool.get()
            slot.stop()
            if slot.lease is not None:
                slot.lease.release()
        if self._cgroups is not None:
            self._cgroups.remove()
        if self._plain_root:
            import shutil

            shutil.rmtree(self._plain_root, ignore_errors=True)

    def __enter__(self) -> ProcessSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ProcessSandbox(slots={self._slots_wanted}, {self.version})"
