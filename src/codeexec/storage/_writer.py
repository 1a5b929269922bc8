"""Write-behind: records are accepted at once and stored in batches by one thread.

A batch is whatever has been accepted when the thread wakes (at most ``batch_size``
records): it wakes when ``batch_size`` records wait, ``flush_interval`` seconds after the
first of them arrived, or when :meth:`WriteBehind.flush` asks. A batch that fails because a
service is unavailable is retried with backoff, and keeps its records; while it fails,
accepting goes on until ``max_pending`` records wait, then :meth:`WriteBehind.put`
blocks up to its timeout and raises :class:`StoreFullError`: memory stays bounded.
A record refused for any other reason (a constraint of the database, a damaged journal
line) is handed to ``reject`` and the rest of its batch is stored.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import StorageUnavailableError, StoreFullError
from ._journal import Journal, Segment

log = logging.getLogger(__name__)

__all__ = ["WriteBehind"]

Entry = dict[str, Any]


class WriteBehind:
    """Accepts entries (journaled first when a journal is given) and calls
    ``store_batch(entries)`` on a background thread until each is stored."""

    def __init__(
        self,
        store_batch: Callable[[Sequence[Entry]], None],
        *,
        reject: Callable[[Entry, BaseException], None],
        journal: Journal | None,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        max_pending: int = 10_000,
    ) -> None:
        self._store_batch = store_batch
        self._reject = reject
        self._journal = journal
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        # (entry, its journal segment) in the order accepted; `_pending` by id for reads.
        self._queue: collections.deque[tuple[Entry, Segment | None]] = collections.deque()
        self._pending: dict[str, list[Entry]] = {}
        self._cond = threading.Condition()
        self._first_at = 0.0  # when the oldest waiting entry arrived
        self._accepted = self._settled = 0  # entries ever queued / ever stored (or set aside)
        self._flush_requested = False
        self._closing = False
        self._failures = 0
        self.last_error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="codeexec-store", daemon=True)
        self._thread.start()
        if journal is not None:
            for segment, entries in journal.orphans():
                log.info("replaying %d records from %s", len(entries), segment.path)
                with self._cond:
                    for entry in entries:
                        self._enqueue(entry, segment)
                    if segment.unsettled == 0:
                        segment.remove()
                    self._cond.notify_all()

    def put(self, entry: Entry, timeout: float | None = None) -> None:
        """Accept ``entry`` (journaled before this returns); StoreFullError if
        ``max_pending`` entries still wait after ``timeout`` seconds."""
        with self._cond:
            if self._closing:
                raise RuntimeError("the store is closed")
            if not self._cond.wait_for(lambda: len(self._queue) < self.max_pending, timeout):
                raise StoreFullError(
                    f"{len(self._queue)} records wait to be stored and none left in"
                    f" {timeout}s; last failure: {self.last_error!r}"
                )
            segment = self._journal.append(entry) if self._journal is not None else None
            self._enqueue(entry, segment)
            self._cond.notify_all()

    def _enqueue(self, entry: Entry, segment: Segment | None) -> None:
        if not self._queue:
            self._first_at = time.monotonic()
        self._queue.append((entry, segment))
        self._pending.setdefault(entry["id"], []).append(entry)
        self._accepted += 1

    def pending(self, ident: str) -> list[Entry]:
        """The entries with this id (revisions) accepted but not stored yet, oldest
        first."""
        with self._cond:
            return list(self._pending.get(ident, ()))

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float | None = None) -> bool:
        """Store everything accepted so far; False if that took longer than ``timeout``."""
        with self._cond:
            if not self._queue:
                return True
            self._flush_requested = True
            self._cond.notify_all()
            # Entries are settled in the order accepted: done when this many are.
            wanted = self._accepted
            return self._cond.wait_for(lambda: self._settled >= wanted, timeout)

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush, then stop the thread. False (with a warning) if records are left;
        they stay in the journal and are stored by the next store opened on it."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if not flushed:
            with self._cond:  # let a store opened later (here too) adopt what is left
                for segment in {id(s): s for _, s in self._queue if s is not None}.values():
                    os.close(segment.fd)
            log.warning(
                "the store closed with %d records not stored (%r); %s",
                len(self._queue),
                self.last_error,
                "they are in the journal" if self._journal is not None else "they are lost",
            )
        return flushed

    # -------------------------------------------------------------- the thread

    def _store_each(self, entries: list[Entry]) -> None:
        """Store ``entries``; if the batch is refused for another reason than an
        unavailable service, find the entries refused and set them aside, so one bad
        record never blocks the rest. Unavailability propagates: the caller retries."""
        try:
            self._store_batch(entries)
        except StorageUnavailableError:
            raise
        except Exception as exc:
            if len(entries) == 1:
                log.error("record %s cannot be stored: %r", entries[0].get("id"), exc)
                self._reject(entries[0], exc)
                return
            for entry in entries:
                self._store_each([entry])

    def _due(self) -> bool:
        return bool(self._queue) and (
            self._flush_requested
            or self._closing
            or len(self._queue) >= self.batch_size
            or time.monotonic() - self._first_at >= self.flush_interval
        )

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    if self._closing:
                        return
                    wait = None
                    if self._queue:
                        wait = max(0.0, self._first_at + self.flush_interval - time.monotonic())
                    self._cond.wait(wait)
                batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
                if self._journal is not None:
                    self._journal.rotate()  # new accepts go to a new segment
            try:
                self._store_each([entry for entry, _ in batch])
            except StorageUnavailableError as exc:  # the database or a tier is down
                self._failures += 1
                self.last_error = exc
                delay = min(5.0, 0.05 * 2**self._failures)
                log.warning(
                    "storing %d records failed (%s); retry in %.2fs", len(batch), exc, delay
                )
                with self._cond:
                    if self._closing:
                        return
                    self._cond.wait(delay)
                continue
            self._failures = 0
            with self._cond:
                for entry, segment in batch:
                    self._queue.popleft()
                    self._settled += 1
                    waiting = self._pending[entry["id"]]
                    waiting.remove(entry)  # stored in order, so the oldest of its id
                    if not waiting:
                        del self._pending[entry["id"]]
                    if segment is not None:
                        segment.unsettled -= 1
                        if segment.closed and segment.unsettled == 0:
                            segment.remove()
                if self._queue:
                    self._first_at = time.monotonic()
                else:
                    self._flush_requested = False
                self._cond.notify_all()
