"""Uids for runs, leased host-wide.

Two runs that share a uid share what the kernel keys by uid: RLIMIT_NPROC, the user
keyring, the right to signal, ptrace, prlimit or renice each other. Each slot or
container therefore runs under a uid no other one on the host holds at the same time,
whichever process made it: two sandboxes in one process, two Celery pool processes,
two services on one machine.

A lease is an ``flock`` on ``<lock dir>/<uid>``: held while the lock's fd is open,
released when it is closed or the holder dies (no stale leases after a crash).
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading

from .._errors import SandboxError

__all__ = ["LOCK_DIR", "UidLease", "lease_uid"]

#: Where the lease files live (root's: only root runs sandboxes with uids).
LOCK_DIR = "/run/codeexec/uids"
#: Uids tried above a sandbox's ``uid_base``.
UID_RANGE = 1000

_lock = threading.Lock()


class UidLease:
    """One uid, held until :meth:`release` (or the process's exit)."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the uid back (idempotent). Only once nothing runs under it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"UidLease({self.uid}{'' if self._fd is not None else ', released'})"


def lease_uid(base: int, *, lock_dir: str = LOCK_DIR) -> UidLease:
    """The lowest uid from ``base`` up that nothing on this host holds; raises
    :class:`~codeexec.SandboxError` when all :data:`UID_RANGE` of them are taken."""
    with _lock:
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        for uid in range(base, base + UID_RANGE):
            flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(os.path.join(lock_dir, str(uid)), flags, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    continue
                raise
            return UidLease(uid, fd)
    raise SandboxError(
        f"every uid from {base} to {base + UID_RANGE - 1} is in use on this host;"
        " give the sandbox another uid_base"
    )
