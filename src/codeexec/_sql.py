"""One way to make an SQLAlchemy engine from a URL, for the SQL cache tier and the store.

- ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``);
- a SQLite file gets WAL journaling and a busy timeout, so a reader never waits for the
  write-behind thread and two processes sharing the file wait for each other instead of
  failing with "database is locked"; commits are fsynced only with
  ``sqlite_synchronous="FULL"``;
- ``sqlite://`` (in memory) shares one connection between threads, or each thread
  would see its own empty database.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import StaticPool

from ._errors import StorageConfigError

__all__ = ["create_engine"]


def create_engine(
    url: str,
    *,
    error: type[Exception] = StorageConfigError,
    sqlite_synchronous: str = "NORMAL",
    **options: Any,
) -> sa.Engine:
    """An engine for ``url``; ``error`` (a store's or a cache's) if SQLAlchemy cannot use it.

    ``sqlite_synchronous``: ``"NORMAL"`` (a commit survives a crash of the process) or
    ``"FULL"`` (also a power cut: every commit is fsynced).
    """
    for alias in ("postgresql://", "postgres://"):
        if url.startswith(alias):
            url = "postgresql+psycopg://" + url[len(alias) :]
    try:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed, sqlite_synchronous, options)
        return sa.create_engine(parsed, pool_pre_ping=True, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise error(f"cannot use database URL {url!r}: {exc}") from exc


def _sqlite_engine(url: sa.URL, synchronous: str, options: dict[str, Any]) -> sa.Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        options.setdefault("poolclass", StaticPool)
    connect_args = {"check_same_thread": False, "timeout": 30.0}
    connect_args.update(options.pop("connect_args", {}))
    engine = sa.create_engine(url, connect_args=connect_args, **options)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA wal_autocheckpoint=16384")
        cursor.close()

    return engine
