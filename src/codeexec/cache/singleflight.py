"""Single-flight: identical work in flight at once is done once.

In one process, :class:`SingleFlight` lets the first caller for a key do the work while
later callers for the same key wait for its result. Across processes and machines the
executor adds a lock from the cache (Redis) around it: see :mod:`codeexec._executor`.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """One call of ``fn`` per key at a time; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, concurrent.futures.Future[T]] = {}

    def do(self, key: str, fn: Callable[[], T]) -> tuple[T, bool]:
        """``(result, shared)``: shared is True when another caller did the work.

        An exception raised by ``fn`` reaches every caller waiting on it.
        """
        with self._lock:
            future = self._calls.get(key)
            leader = future is None
            if leader:
                future = concurrent.futures.Future()
                self._calls[key] = future
        assert future is not None
        if not leader:
            return future.result(), True
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            with self._lock:
                del self._calls[key]
