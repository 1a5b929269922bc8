"""L3: a SQL table (SQLAlchemy Core): SQLite by default, PostgreSQL in production.

One row per key with an ``expires_at`` column (indexed, so :meth:`SQLCache.purge`
deletes expired rows without a scan). Each thread keeps its connection, in autocommit
mode: a pooled checkout, or a BEGIN/ROLLBACK round trip, per call would cost more than
the SELECT itself, and every statement here is atomic on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

try:
    import sqlalchemy as sa
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("SQLCache needs SQLAlchemy: pip install 'codeexec[sql]'") from exc

from .._errors import CacheError
from .._sql import create_engine
from ._base import MISS, _Miss, decode, encode

__all__ = ["SQLCache"]


class SQLCache:
    """A SQL tier.

    :param url: an SQLAlchemy URL (``sqlite:///results.db``,
        ``postgresql+psycopg://user@127.0.0.1/db``) or pass ``engine``.
    :param table: the table's name (created if absent).
    :param ttl: default seconds an entry lives.
    :param compress_above: values larger than this many bytes are zlib-compressed.
    """

    name = "sql"

    def __init__(
        self,
        url: str = "sqlite:///codeexec-cache.db",
        *,
        engine: Any = None,
        table: str = "codeexec_cache",
        ttl: float = 86400.0,
        compress_above: int | None = 1024,
    ) -> None:
        if engine is None:
            engine = create_engine(url, error=CacheError)
        self.engine = engine
        self.ttl = ttl
        self.compress_above = compress_above
        metadata = sa.MetaData()
        self.table = sa.Table(
            table,
            metadata,
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("value", sa.LargeBinary, nullable=False),
            sa.Column("expires_at", sa.Float, nullable=False, index=True),
        )
        self._metadata = metadata
        self._created = False  # the table is made on first use: a database that is
        # down when the cache is built must not stop the host from starting.
        t = self.table
        self._select = sa.select(t.c.value, t.c.expires_at).where(t.c.key == sa.bindparam("k"))
        self._delete = sa.delete(t).where(t.c.key == sa.bindparam("k"))
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()

    # -------------------------------------------------------------- connections

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:  # a broken one is dropped in _run, on its first error
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            if not self._created:
                self._metadata.create_all(conn)
                self._created = True
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _run(self, statement: Any, params: Any = None) -> Any:
        conn = self._conn()
        try:
            return conn.execute(statement, params)
        except sa.exc.DBAPIError:
            # A broken connection must not stay this thread's: drop it.
            self._local.conn = None
            conn.invalidate()
            raise

    # -------------------------------------------------------------- protocol

    def get(self, key: str) -> bytes | _Miss:
        row = self._run(self._select, {"k": key}).first()
        if row is None or row[1] < time.time():
            return MISS
        return decode(row[0])

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(keys)
        if not keys:
            return {}
        t = self.table
        rows = self._run(
            sa.select(t.c.key, t.c.value, t.c.expires_at).where(t.c.key.in_(keys))
        ).all()
        now = time.time()
        return {r.key: decode(r.value) for r in rows if r.expires_at >= now}

    def _upsert(self, rows: list[dict[str, Any]]) -> Any:
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql as upserting
        elif dialect == "sqlite":
            from sqlalchemy.dialects import sqlite as upserting  # type: ignore[no-redef]
        else:  # pragma: no cover - other databases: delete then insert
            return None
        statement = upserting.insert(self.table).values(rows)
        return statement.on_conflict_do_update(
            index_elements=[self.table.c.key],
            set_={"value": statement.excluded.value, "expires_at": statement.excluded.expires_at},
        )

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl)

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        if not items:
            return
        expires = time.time() + (self.ttl if ttl is None else ttl)
        rows = [
            {"key": k, "value": encode(v, self.compress_above), "expires_at": expires}
            for k, v in items.items()
        ]
        statement = self._upsert(rows)
        if statement is None:  # pragma: no cover
            with self.engine.begin() as conn:
                conn.execute(sa.delete(self.table).where(self.table.c.key.in_(list(items))))
                conn.execute(sa.insert(self.table), rows)
            return
        self._run(statement)

    def delete(self, key: str) -> None:
        self._run(self._delete, {"k": key})

    def purge(self) -> int:
        """Delete every expired row; returns how many went."""
        statement = sa.delete(self.table).where(self.table.c.expires_at < time.time())
        return int(self._run(statement).rowcount)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"SQLCache({self.engine.url!r}, table={self.table.name!r})"
