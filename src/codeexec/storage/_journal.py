"""The write-ahead journal behind the store's write-behind queue.

A record is *accepted* when its line is in the journal: one ``write(2)`` of one JSON
line to the current segment file, before :meth:`Store.save` returns. The write-behind
thread later stores it for good, and a segment file is removed only when every record
in it is in the database and the blob tiers. So a crash of the host process between two
batches loses nothing: the next store opened on the same journal directory finds the
segment and stores its records again (which is harmless: rows already there are kept,
blobs are rewritten with the same bytes). With ``fsync=True`` every line is also forced
to disk, so a record survives a power cut too, at the price of one fsync per save.

Each live segment is held with an exclusive ``flock``; a segment nobody holds belongs
to a process that died, and is adopted (and locked) by the next store that looks. So
several processes may share one journal directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

from .._errors import StorageUnavailableError

log = logging.getLogger(__name__)

__all__ = ["Journal", "Segment"]

SUFFIX = ".journal"


class Segment:
    """One journal file, held locked by this process for as long as it is open."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.unsettled = 0  # records in this file not yet stored for good
        self.closed = False  # no more appends: removable once nothing is unsettled

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)  # closing drops the lock


class Journal:
    """Append-only segment files in ``directory`` (made 0700 if absent)."""

    def __init__(self, directory: str, *, fsync: bool = False) -> None:
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailableError(
                f"cannot make the journal directory {self.directory}: {exc}"
            ) from exc
        self._current: Segment | None = None

    def append(self, entry: dict[str, Any]) -> Segment:
        """Write ``entry`` as one line; returns its segment. Raises
        StorageUnavailableError (and leaves the file as it was) if it cannot."""
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        segment = self._current or self._open_new()
        try:
            written = os.write(segment.fd, line)
            if written != len(line):  # a short write (disk full): not accepted
                raise OSError(28, "short write to the journal")
            if self.fsync:
                os.fsync(segment.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.size)  # no torn line for the next one
            raise StorageUnavailableError(
                f"cannot write to the journal {segment.path}: {exc}"
            ) from exc
        segment.size += len(line)
        segment.unsettled += 1
        return segment

    def _open_new(self) -> Segment:
        path = os.path.join(self.directory, f"{os.getpid()}-{uuid.uuid4().hex[:12]}{SUFFIX}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageUnavailableError(f"cannot open a journal segment {path}: {exc}") from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._current = Segment(path, fd)
        return self._current

    def rotate(self) -> None:
        """Start a new segment with the next append; the current one takes no more."""
        if self._current is not None:
            self._current.closed = True
            self._current = None

    def orphans(self) -> Iterator[tuple[Segment, list[dict[str, Any]]]]:
        """Segments left by processes that died, each locked by us now, with their
        entries. A torn last line (the crash hit mid-write, so its save never
        returned) is skipped."""
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # settled by its owner meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its writer is alive
            if not os.path.exists(path):  # removed between listdir and lock
                os.close(fd)
                continue
            entries = list(_read_entries(fd, path))
            segment = Segment(path, fd)
            segment.closed = True
            segment.unsettled = len(entries)
            yield segment, entries


def _read_entries(fd: int, path: str) -> Iterator[dict[str, Any]]:
    with os.fdopen(os.dup(fd), "rb") as f:
        for number, line in enumerate(f, 1):
            try:
                yield json.loads(line)
            except ValueError:
                log.warning("journal %s: line %d is torn, skipped", path, number)
