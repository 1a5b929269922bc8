"""Result caching: tiers, layers, single-flight and the content key.

- :class:`MemoryCache` (L1, in-process), ``RedisCache`` (L2, shared; needs
  ``codeexec[redis]``), ``SQLCache`` (L3, durable; needs ``codeexec[sql]``), all behind
  one :class:`Cache` protocol where a miss is :data:`MISS`;
- :class:`LayeredCache`: read-through with promotion, write-through, per-tier TTLs with
  jitter, circuit breakers, version-based invalidation, optional stale serving;
- :func:`from_url`: ``"memory://"``, ``"redis://127.0.0.1:6379/0"``,
  ``"sqlite:///results.db"``, ``"postgresql://..."``, or a list of them (fastest first);
- :mod:`codeexec.cache.keys`: the fingerprint of a submission.

Redis and SQLAlchemy are imported only when their tier is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import CacheError
from ._base import MISS, Cache
from .layered import CircuitBreaker, Entry, LayeredCache
from .memory import MemoryCache
from .singleflight import SingleFlight

__all__ = [
    "MISS",
    "Cache",
    "CircuitBreaker",
    "Entry",
    "LayeredCache",
    "MemoryCache",
    "RedisCache",
    "SQLCache",
    "SingleFlight",
    "from_url",
    "make_cache",
]


def __getattr__(name: str) -> Any:
    # Optional tiers, imported on first use so `import codeexec` stays light.
    if name == "RedisCache":
        from .redis import RedisCache

        return RedisCache
    if name == "SQLCache":
        from .sql import SQLCache

        return SQLCache
    raise AttributeError(name)


def from_url(url: str, **options: Any) -> Cache:
    """One tier from a URL; ``options`` go to its constructor."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemoryCache(**options)
    if scheme in ("redis", "rediss", "unix"):
        from .redis import RedisCache

        return RedisCache(url, **options)
    if scheme.startswith(("sqlite", "postgresql", "postgres", "mysql")):
        from .sql import SQLCache

        if scheme == "postgres":
            url = "postgresql" + url[len("postgres") :]
        return SQLCache(url, **options)
    raise CacheError(
        f"unknown cache URL scheme {scheme!r} in {url!r}; use memory://, redis://,"
        " sqlite:/// or postgresql://"
    )


def make_cache(spec: object) -> LayeredCache | None:
    """What ``Executor(cache=...)`` accepts, as a LayeredCache (or None for no cache):
    a LayeredCache, one tier, a URL, or a sequence of tiers and URLs (fastest first)."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, LayeredCache):
        return spec
    if isinstance(spec, str):
        return LayeredCache([from_url(spec)])
    if isinstance(spec, Cache):
        return LayeredCache([spec])
    if isinstance(spec, Sequence):
        return LayeredCache([from_url(s) if isinstance(s, str) else s for s in spec])
    raise CacheError(f"cache must be a Cache, a LayeredCache, a URL or a list, got {spec!r}")
