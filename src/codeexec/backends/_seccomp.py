"""The one seccomp policy every sandbox applies to the programs it runs.

Declared once here (:data:`KILL`, :data:`OTHER_PROCESS`, :data:`NO_SUCH_CALL`) and
rendered two ways:

- :func:`bpf`: a BPF program compiled by libseccomp (``libseccomp.so.2``, through
  ctypes), which the jail init installs in each program's process right before its
  execve: in the process sandbox, in the nsjail sandbox's persistent jails and in the
  docker sandbox's containers (there on top of the daemon's own profile);
- :func:`kafel`: the same kill list in nsjail's kafel language, nsjail's own filter
  (which also covers the runs that nsjail starts without the init).

What it refuses, and why: system calls a submission never needs and that reach
beyond its run (debugging other processes, mounts, kernel keyrings, which persist per
uid, BPF, perf, kernel modules, new user namespaces, the clock, ...) kill the process
with SIGSYS; calls that would reconfigure *another* process (its rlimits, nice value,
scheduling policy, CPU affinity, I/O priority, memory placement) fail with EPERM
unless aimed at the caller itself (pid 0); ``clone3``, whose flags a filter cannot
read, fails with ENOSYS so that libc falls back to ``clone``, whose flags it can.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

__all__ = ["KILL", "NO_SUCH_CALL", "OTHER_PROCESS", "SeccompUnavailable", "bpf", "kafel"]

#: Kill the process (SIGSYS).
KILL = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
    "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd",
    "keyctl", "add_key", "request_key",
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module",
    "delete_module",
    "unshare", "setns",
    "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "fanotify_init",
    "iopl", "ioperm", "swapon", "swapoff", "acct", "syslog", "quotactl", "vhangup",
    "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
)  # fmt: skip
#: Where kafel names a call otherwise than the kernel's headers (and libseccomp) do.
_KAFEL_NAMES = {"umount2": "umount"}
#: clone with CLONE_NEWUSER kills too (a user namespace gives capabilities in it).
CLONE_NEWUSER = 0x10000000
#: Call → index of its pid (or "who") argument: EPERM unless that argument is 0.
OTHER_PROCESS = {
    "prlimit64": 0,
    "setpriority": 1,
    "sched_setaffinity": 0,
    "sched_setscheduler": 0,
    "sched_setparam": 0,
    "sched_setattr": 0,
    "ioprio_set": 1,
    "migrate_pages": 0,
    "move_pages": 0,
}
#: Fail with ENOSYS.
NO_SUCH_CALL = ("clone3",)

_ACT_ALLOW = 0x7FFF0000
_ACT_KILL_PROCESS = 0x80000000
_CMP_NE = 1
_CMP_MASKED_EQ = 7


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


class SeccompUnavailable(OSError):
    """libseccomp is missing or refused the policy (the reason says which)."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def kafel() -> str:
    """The kill part of the policy as an nsjail ``--seccomp_string``."""
    names = ",\n    ".join(
        [
            *(_KAFEL_NAMES.get(c, c) for c in KILL),
            f"clone {{ (clone_flags & {CLONE_NEWUSER:#x}) != 0 }}",
        ]
    )
    no_call = ", ".join(NO_SUCH_CALL)
    return (
        "POLICY codeexec {\n"
        f"  KILL {{\n    {names}\n  }},\n"
        f"  ERRNO({errno.ENOSYS}) {{ {no_call} }}\n"
        "}\n"
        "USE codeexec DEFAULT ALLOW\n"
    )


@functools.cache
def bpf() -> bytes:
    """The whole policy as a BPF program for this machine's architecture (a cBPF
    ``struct sock_filter`` array). Other architectures' system call ABIs (i386 on
    x86_64, say) kill the process. Raises :class:`SeccompUnavailable`."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as exc:
        raise SeccompUnavailable(
            errno.ENOENT, f"libseccomp is not installed ({exc}); apt-get install libseccomp2"
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompUnavailable(errno.ENOMEM, "seccomp_init failed")
    try:

        def rule(action: int, call: str, *conditions: tuple[int, int, int, int]) -> None:
            number = lib.seccomp_syscall_resolve_name(call.encode())
            if number < 0:
                return  # not a system call on this architecture
            args = (_ArgCmp * max(1, len(conditions)))(*[_ArgCmp(*c) for c in conditions])
            result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), args)
            if result < 0:
                raise SeccompUnavailable(
                    -result, f"seccomp rule for {call}: {os.strerror(-result)}"
                )

        for call in KILL:
            rule(_ACT_KILL_PROCESS, call)
        rule(_ACT_KILL_PROCESS, "clone", (0, _CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER))
        for call, index in OTHER_PROCESS.items():
            rule(_act_errno(errno.EPERM), call, (index, _CMP_NE, 0, 0))
        for call in NO_SUCH_CALL:
            rule(_act_errno(errno.ENOSYS), call)
        fd = os.memfd_create("seccomp", os.MFD_CLOEXEC)
        try:
            result = lib.seccomp_export_bpf(ctx, fd)
            if result < 0:
                raise SeccompUnavailable(-result, f"seccomp_export_bpf: {os.strerror(-result)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
