"""L1: an in-process LRU with expiry (cachetools), behind a lock.

cachetools' caches are not thread-safe; one lock around each call costs about 0.2 µs
and keeps a hit near half a microsecond.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from cachetools import TLRUCache

from ._base import MISS, _Miss

__all__ = ["MemoryCache"]


def _expires(key: str, value: tuple[bytes, float], now: float) -> float:
    return value[1]


class MemoryCache:
    """Least-recently-used, size-bounded, per-entry expiry.

    :param maxsize: entries kept at most.
    :param ttl: default seconds an entry lives.
    """

    name = "memory"

    def __init__(self, maxsize: int = 10_000, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._cache: TLRUCache[str, tuple[bytes, float]] = TLRUCache(
            maxsize, ttu=_expires, timer=time.monotonic
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | _Miss:
        with self._lock:
            entry = self._cache.get(key)
        return MISS if entry is None else entry[0]

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        found = {}
        with self._lock:
            for key in keys:
                entry = self._cache.get(key)
                if entry is not None:
                    found[key] = entry[0]
        return found

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = time.monotonic() + (self.ttl if ttl is None else ttl)
        with self._lock:
            self._cache[key] = (value, expires)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        expires = time.monotonic() + (self.ttl if ttl is None else ttl)
        with self._lock:
            for key, value in items.items():
                self._cache[key] = (value, expires)

    def delete(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        with self._lock:
            self._cache.expire()
            return len(self._cache)

    def close(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self._cache.maxsize}, ttl={self.ttl})"
