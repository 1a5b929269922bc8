"""L1: an in-process LRU with expiry (cachetools), behind a lock.

cachetools' caches are not thread-safe: one lock around each call. The expiry is
checked here, on read, over a plain ``LRUCache``: cachetools' TTL caches keep their
expiry order up to date on every access, which costs 2 µs a hit against 0.4 µs; an
expired entry here simply waits for eviction or for its next read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping

from cachetools import LRUCache

from ._base import MISS, _Miss, get_each

__all__ = ["MemoryCache"]


class MemoryCache:
    """Least-recently-used, size-bounded, per-entry expiry.

    :param maxsize: entries kept at most.
    :param ttl: default seconds an entry lives.
    """

    name = "memory"

    def __init__(self, maxsize: int = 10_000, ttl: float = 3600.0) -> None:
        self.ttl = ttl
        self._cache: LRUCache[str, tuple[bytes, float]] = LRUCache(maxsize)
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | _Miss:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return MISS
            if entry[1] < time.monotonic():
                del self._cache[key]
                return MISS
            return entry[0]

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return get_each(self, keys)

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
        """Entries held, expired ones not yet evicted included."""
        with self._lock:
            return len(self._cache)

    def close(self) -> None:
        self.clear()

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self._cache.maxsize}, ttl={self.ttl})"
