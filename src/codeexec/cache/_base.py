"""The cache protocol every tier implements, and what tiers share.

A tier maps string keys to ``bytes`` with a time to live. A miss is the :data:`MISS`
sentinel, never ``None`` (so a stored empty value is not a miss). Tiers raise
:class:`~codeexec.CacheError` (or the client library's own error) when their backend
fails; :class:`~codeexec.cache.LayeredCache` turns failures into skipped tiers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Final, Protocol, runtime_checkable

from .._errors import CacheError

__all__ = ["MISS", "Cache", "decode", "encode", "get_each"]


class _Miss:
    """The type of :data:`MISS`."""

    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


#: Returned by ``get`` for a key that is absent or expired.
MISS: Final = _Miss()


@runtime_checkable
class Cache(Protocol):
    """A key → bytes store with expiry."""

    #: A short name for logs and stats: "memory", "redis", "sql".
    name: str

    def get(self, key: str) -> bytes | _Miss:
        """The value, or :data:`MISS`."""
        ...

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The values found; absent keys are left out."""
        ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (None: the tier's default)."""
        ...

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        """Store several values with one expiry."""
        ...

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error if absent)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def get_each(cache: Cache, keys: Iterable[str]) -> dict[str, bytes]:
    """``get_many`` for a tier with no batch read of its own: one ``get`` per key."""
    found = {}
    for key in keys:
        value = cache.get(key)
        if isinstance(value, bytes):
            found[key] = value
    return found


# Values on the wire and on disk: one byte of format, then the payload. Compression
# pays only above a size (a verdict-only result is a few hundred bytes).
_RAW = b"r"
_ZLIB = b"z"


def encode(value: bytes, compress_above: int | None) -> bytes:
    """Frame ``value``, compressed with zlib when larger than ``compress_above``."""
    if compress_above is not None and len(value) > compress_above:
        return _ZLIB + zlib.compress(value, 3)
    return _RAW + value


def decode(data: bytes) -> bytes:
    """Undo :func:`encode`; :class:`CacheError` for anything it did not make."""
    head, body = data[:1], data[1:]
    if head == _RAW:
        return body
    if head == _ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error as exc:
            raise CacheError(f"corrupt compressed cache value: {exc}") from exc
    raise CacheError(f"unknown cache value format {head!r}")
