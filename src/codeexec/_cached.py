"""Judging through the result cache: the same run never executes twice.

For one prepared submission:

1. look its key up (``result:<fingerprint>``, plus ``:v<version>`` when the submission
   has a ``problem_id``, so :meth:`LayeredCache.invalidate` orphans old results);
2. on a miss, single-flight: in this process one thread executes and the others wait
   for its result; across processes a lock from the cache (Redis) does the same, and a
   process that finds the lock taken waits for the value to appear (or for the lock to
   go, if its holder died, and then takes over);
3. store the result (never an ``internal_error``: that is the sandbox's failure, not
   the program's outcome).

A result served from the cache is the stored one with ``cached=True`` and the asking
submission's metadata. Cache faults never fail a judgement: a failing tier is skipped
(see :class:`~codeexec.cache.LayeredCache`), a failing lock degrades to in-process
single-flight.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from ._errors import JobCancelled
from ._model import Result, Verdict
from ._runner import Prepared
from .cache import LayeredCache, SingleFlight

log = logging.getLogger(__name__)

__all__ = ["CachedJudge"]

#: Longest a process waits for another process's run of the same key (seconds).
_WAIT_LIMIT = 600.0


def _encode(result: Result) -> bytes:
    data = result.to_dict()
    del data["metadata"]  # the host's keys belong to each submission, not to the run
    return json.dumps(data, separators=(",", ":")).encode()


def _cacheable(result: Result) -> bool:
    """A result that is the program's outcome: no part of it is a failure of the
    sandbox or the checker (an ``internal_error`` anywhere, even after a wrong answer),
    which another run might not repeat."""
    if result.verdict is Verdict.INTERNAL_ERROR:
        return False
    if result.compile is not None and result.compile.message == "sandbox failure":
        return False
    return all(t.verdict is not Verdict.INTERNAL_ERROR for t in result.tests)


class CachedJudge:
    """Puts the cache and single-flight in front of an execution."""

    def __init__(
        self,
        cache: LayeredCache,
        *,
        background: Callable[[Callable[[], Any]], Any] | None = None,
        lock_ttl: float = 30.0,
    ) -> None:
        self.cache = cache
        self._background = background
        self._lock_ttl = lock_ttl
        self._flight: SingleFlight[Result] = SingleFlight()
        self._stats_lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "executed": 0, "shared": 0, "stale": 0}

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def key(self, prepared: Prepared) -> str:
        key = "result:" + prepared.fingerprint
        problem = prepared.submission.metadata.get("problem_id")
        if problem is not None:
            key += f":v{self.cache.version(problem)}"
        return key

    def _decode(self, raw: bytes, prepared: Prepared) -> Result | None:
        try:
            data = json.loads(raw)
            data["metadata"] = dict(prepared.submission.metadata)
            result = Result.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("unreadable cached result for %s: %s", prepared.fingerprint[:12], exc)
            return None
        if result.fingerprint != prepared.fingerprint:
            log.warning("cached result under %s is for another run", prepared.fingerprint[:12])
            return None
        return attrs.evolve(result, cached=True)

    def lookup(self, key: str, prepared: Prepared, execute: Callable[[], Result]) -> Result | None:
        """A cached result, refreshed in the background (``execute``) if it is stale."""
        entry = self.cache.get_entry(key)
        if entry is None:
            return None
        result = self._decode(entry.value, prepared)
        if result is not None and entry.stale:
            self._count("stale")
            if self._background is not None:
                self._background(
                    lambda: self._flight.do(key, lambda: self._run(key, execute, prepared))
                )
        return result

    def judge(
        self,
        prepared: Prepared,
        execute: Callable[[], Result],
        stop: threading.Event | None = None,
    ) -> Result:
        """The cached result of ``prepared``, or ``execute()``'s, executed once.

        ``stop`` is the caller's cancel event: a run shared with another caller whose
        own job was cancelled is run again for this one, unless ``stop`` is set too."""
        key = self.key(prepared)
        cached = self.lookup(key, prepared, execute)
        if cached is not None:
            self._count("hits")
            return cached
        self._count("misses")
        while True:
            try:
                result, shared = self._flight.do(
                    key, lambda: self._across_processes(key, prepared, execute)
                )
                break
            except JobCancelled:
                if stop is not None and stop.is_set():
                    raise
                # Another caller's job was cancelled while this one waited on its run.
        if shared:
            self._count("shared")
            return attrs.evolve(result, cached=True, metadata=dict(prepared.submission.metadata))
        return result

    def _across_processes(
        self, key: str, prepared: Prepared, execute: Callable[[], Result]
    ) -> Result:
        try:
            lock = self.cache.lock(key, self._lock_ttl)
        except Exception as exc:  # the lock's tier is down: this process alone
            log.warning("no cross-process lock for %s: %s", key[:20], exc)
            lock = None
        if lock is None:
            return self._run(key, execute, prepared)
        deadline = time.monotonic() + _WAIT_LIMIT
        pause = 0.005
        try:
            while not lock.acquire():
                # Another process runs it: wait for its result, or for its lock to
                # go (it died, or finished without storing), then try to take over.
                cached = self.lookup(key, prepared, execute)
                if cached is not None:
                    self._count("shared")
                    return cached
                if time.monotonic() > deadline:
                    log.warning("waited %.0fs for %s; running it here", _WAIT_LIMIT, key[:20])
                    return self._run(key, execute, prepared)
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
        except Exception as exc:  # Redis went away while we waited
            log.warning("cross-process lock for %s failed: %s", key[:20], exc)
            return self._run(key, execute, prepared)
        try:
            cached = self.lookup(key, prepared, execute)  # stored while we waited for the lock
            if cached is not None:
                self._count("shared")
                return cached
            return self._run(key, execute, prepared)
        finally:
            lock.release()

    def _run(self, key: str, execute: Callable[[], Result], prepared: Prepared) -> Result:
        result = execute()
        self._count("executed")
        # The checker's data, read again: if it changed while the program ran, the
        # verdict may be the new data's while the key is the old data's.
        if _cacheable(result) and prepared.checker_unchanged():
            self.cache.set(key, _encode(result))
        return result
