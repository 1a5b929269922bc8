"""Host-side file operations on trees a sandboxed program controlled.

A run's work dir and scratch mounts belong to the program while it runs: by the time
the host (root) writes the next run's files, collects artifacts or empties the scratch,
any name in there may be a symlink to the host's ``/etc``, a FIFO that blocks an
``open``, a directory nested a hundred thousand levels deep, or a file of gigabytes.
Everything here therefore works through directory fds, one path component at a time:

- never follows a symlink (``O_NOFOLLOW`` on every component; ``O_CREAT|O_EXCL`` for new
  files), so no host-side operation leaves the tree it was given;
- opens only with ``O_NONBLOCK`` and reads only regular files, with size caps;
- walks without recursion and with a bounded number of open fds, so no depth or
  file count can exhaust the stack, the fd table or ``PATH_MAX``.

Stdlib only: the slot server (a script with no package) loads this module by path.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import secrets
import stat
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CollectLimits",
    "collect",
    "empty_dir",
    "empty_dir_fd",
    "open_dir",
    "write_all",
    "write_files",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Directories held open at once while emptying a tree; deeper ones are moved up to
#: the top first (a rename), so any depth is emptied with this many fds.
_MAX_OPEN_DIRS = 32


def open_dir(base: str, relative: str = "") -> int:
    """An fd of directory ``relative`` under ``base``, no component of ``relative``
    being a symlink. ``base`` itself is opened as given: it is the host's (it may pass
    through a magic link such as ``/proc/PID/root``)."""
    fd = os.open(base, _DIR_FLAGS & ~os.O_NOFOLLOW)
    try:
        for part in _parts(relative):
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parts(relative: str) -> list[str]:
    parts = [p for p in relative.split("/") if p and p != "."]
    if ".." in parts:
        raise OSError(errno.EINVAL, f"'..' in {relative!r}")
    return parts


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_files(base_fd: int, files: Iterable[Any], uid: int | None) -> None:
    """Create the run's files (objects with ``path``, ``content``, ``executable``) in
    the directory ``base_fd``. Directories they need are made and given to ``uid``
    (so the program may write there); an existing name of any kind is an error,
    never something to follow."""
    for file in files:
        *dirs, name = _parts(file.path)
        fd = os.dup(base_fd)
        try:
            for part in dirs:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    created = True
                except FileExistsError:
                    created = False
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created and uid is not None:
                    os.fchown(fd, uid, uid)
            mode = 0o755 if file.executable else 0o644
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(name, flags, mode, dir_fd=fd)
            try:
                write_all(out, file.content)
            finally:
                os.close(out)
        finally:
            os.close(fd)


class CollectLimits:
    """Bounds on what :func:`collect` brings back from a tree."""

    #: Bytes in all (an artifact larger than this is the program's doing, not ours).
    max_bytes = 256 << 20
    #: Files in all.
    max_files = 4096
    #: Directory levels below the base that are searched.
    max_depth = 16


def collect(base_fd: int, patterns: tuple[str, ...]) -> dict[str, bytes]:
    """Regular files under ``base_fd`` whose relative paths match ``patterns``.

    Symlinks, FIFOs, sockets and devices are skipped, never opened in a way that could
    block or leave the tree; deeper than :attr:`CollectLimits.max_depth` is not
    searched. Raises ``OSError(EFBIG)`` past the byte or file count caps.
    """
    found: dict[str, bytes] = {}
    total = 0
    stack: list[tuple[int, str]] = [(os.dup(base_fd), "")]
    try:
        while stack:
            fd, prefix = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
                for name, is_dir in listed:
                    rel = prefix + name
                    if is_dir:
                        if rel.count("/") + 1 < CollectLimits.max_depth:
                            with contextlib.suppress(OSError):
                                stack.append((os.open(name, _DIR_FLAGS, dir_fd=fd), rel + "/"))
                        continue
                    if not any(fnmatch.fnmatchcase(rel, p) for p in patterns):
                        continue
                    data = _read_regular(fd, name, CollectLimits.max_bytes - total)
                    if data is None:
                        continue
                    total += len(data)
                    found[rel] = data
                    if len(found) > CollectLimits.max_files:
                        raise OSError(errno.EFBIG, "too many files to collect")
            finally:
                os.close(fd)
    finally:
        for fd, _ in stack:
            os.close(fd)
    return found


def _read_regular(dir_fd: int, name: str, room: int) -> bytes | None:
    """The content of regular file ``name`` (None if it is anything else)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return None  # a symlink (ELOOP), gone, or not ours to read
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > room:
            raise OSError(errno.EFBIG, f"{name}: collected files exceed the size cap")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > room:
                raise OSError(errno.EFBIG, f"{name}: collected files exceed the size cap")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def empty_dir(path: str) -> None:
    """Remove everything in directory ``path`` (which is kept), whatever the tree."""
    fd = open_dir(path)
    try:
        empty_dir_fd(fd)
    finally:
        os.close(fd)


def empty_dir_fd(top: int) -> None:
    """Remove everything in the directory ``top``, never following a link.

    Iterative, with at most :data:`_MAX_OPEN_DIRS` directories open: a directory
    found deeper than that is renamed into ``top`` and emptied from there, so a nest
    of any depth costs time linear in its size and nothing else. Raises OSError if
    something cannot be removed (the caller discards what held the tree).
    """
    # Each level: (its fd, its name in the level above, subdirectories still to do).
    stack: list[tuple[int, str, list[str]]] = [(top, "", _clear_files(top))]
    try:
        while stack:
            fd, _, pending = stack[-1]
            if pending:
                name = pending.pop()
                if len(stack) >= _MAX_OPEN_DIRS:
                    stack[0][2].append(_move_up(fd, name, top))
                    continue
                try:
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    os.unlink(name, dir_fd=fd)  # no longer a directory
                    continue
                stack.append((child, name, _clear_files(child)))
                continue
            # Everything below this level is done. (Nothing runs in the tree any more:
            # a name that appeared meanwhile makes the rmdir fail, and the caller
            # discards what held the tree.)
            _, name, _ = stack.pop()
            if stack:
                os.close(fd)
                os.rmdir(name, dir_fd=stack[-1][0])
    finally:
        for fd, _, _ in stack[1:]:
            with contextlib.suppress(OSError):
                os.close(fd)


def _move_up(fd: int, name: str, top: int) -> str:
    """Rename directory ``name`` of ``fd`` into ``top``; returns its new name. The name
    is random, so the program cannot have made it in advance (renaming onto a
    directory it prepared would fail, and with it the whole cleanup)."""
    for attempt in range(8):
        flat = f".codeexec-flat-{secrets.token_hex(8)}"
        try:
            os.rename(name, flat, src_dir_fd=fd, dst_dir_fd=top)
            return flat
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR) or attempt == 7:
                raise
    raise AssertionError("unreachable")


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-directory in ``fd``; return the names of its directories."""
    dirs = []
    with os.scandir(fd) as entries:
        listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    for name, is_dir in listed:
        if is_dir:
            dirs.append(name)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
    return dirs
