"""Storage: every submission and result kept, found fast, and cheap as it ages.

- :class:`Store`: the one object a host needs (``Executor(store=Store(...))``);
- :class:`MetadataStore`: the SQL rows (SQLite or PostgreSQL, migrated by Alembic,
  monthly partitions on PostgreSQL), queried newest first with keyset pages;
- :class:`BlobStore` / :class:`BlobTier`: compressed blobs on fsspec, a hot tier and a
  cold one;
- :meth:`Store.lifecycle`: hot → cold → deleted, by age.

Needs ``codeexec[storage]`` (SQLAlchemy, Alembic, fsspec, zstandard) and, for an S3
tier, ``codeexec[s3]``. Nothing here is imported by ``import codeexec``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BlobStore",
    "BlobTier",
    "LifecycleReport",
    "MetadataStore",
    "Page",
    "Record",
    "Store",
    "StoredSubmission",
    "make_store",
]

_WHERE = {
    "BlobStore": "._blobs",
    "BlobTier": "._blobs",
    "LifecycleReport": "._lifecycle",
    "MetadataStore": "._metadata",
    "Page": "._metadata",
    "Record": "._metadata",
    "Store": "._store",
    "StoredSubmission": "._store",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: a host that never stores never imports SQLAlchemy.
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


def make_store(spec: object) -> Any:
    """What ``Executor(store=...)`` accepts, as a Store (or None): a Store, or a
    directory path (everything local there, see :meth:`Store.at`)."""
    import os

    from .._errors import StorageConfigError

    if spec is None or spec is False:
        return None
    from ._store import Store

    if isinstance(spec, Store):
        return spec
    if isinstance(spec, str | os.PathLike):
        if "://" in str(spec):
            raise StorageConfigError(
                f"store={spec!r}: give a directory, or Store(db=..., hot=..., cold=...)"
            )
        return Store.at(spec)
    raise StorageConfigError(f"store must be a Store or a directory, got {spec!r}")
