"""The SQL metadata store: one row per stored submission (SQLAlchemy 2 Core).

SQLite by default, PostgreSQL in production, where the table is range-partitioned by
month on ``created_at`` and partitions are created ahead of time. The schema is made and
upgraded by Alembic (``migrations/``), never by ``create_all``, so a deployed database
moves from one version of codeexec to the next by the same path as a new one.

Pages are newest first and keyset-paginated on ``(created_at, id)``: the cursor is the
last row's position, so page 1,000 costs what page 1 costs, and a row inserted while a
client pages does not shift the pages it has not read yet.

Content-addressed blobs (code, tests) are shared between records, so a blob the
lifecycle deletes must not be one a new record is about to reference. The write path
and that deletion take one lock in turn (:meth:`MetadataStore.blob_guard`): shared by
writers while they write blobs and commit rows, exclusive while the lifecycle checks
references and deletes. On PostgreSQL it is a transaction-level advisory lock, on a
SQLite file an ``flock`` beside the database.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import resources
from typing import Any

import attrs

try:
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "the metadata store needs SQLAlchemy and Alembic: pip install 'codeexec[storage]'"
    ) from exc

from .._errors import StorageConfigError, StorageError, StorageUnavailableError
from .._sql import create_engine

__all__ = ["TABLE", "MetadataStore", "Page", "Record"]

TABLE = "codeexec_submissions"
UTC = dt.UTC
# Key of the PostgreSQL advisory locks (migrations, blob guard): a fixed 64-bit number.
_MIGRATE_LOCK = zlib.crc32(b"codeexec.migrate")
_BLOB_LOCK = zlib.crc32(b"codeexec.blobs")


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database (SQLite keeps
    no zone, so it stores naive UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise StorageError(f"datetimes must carry a time zone, got naive {value}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
submissions = sa.Table(
    TABLE,
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", UTCDateTime, primary_key=True),
    sa.Column("user_id", sa.String(255)),
    sa.Column("problem_id", sa.String(255)),
    sa.Column("language", sa.String(64), nullable=False),
    sa.Column("verdict", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("backend", sa.String(64), nullable=False),
    sa.Column("cached", sa.Boolean, nullable=False),
    sa.Column("tests_total", sa.Integer, nullable=False),
    sa.Column("tests_passed", sa.Integer, nullable=False),
    sa.Column("cpu_time", sa.Float, nullable=False),
    sa.Column("wall_time", sa.Float, nullable=False),
    sa.Column("memory_peak", sa.BigInteger, nullable=False),
    sa.Column("queue_time", sa.Float, nullable=False),
    sa.Column("total_time", sa.Float, nullable=False),
    sa.Column("code_key", sa.String(255), nullable=False),
    sa.Column("code_bytes", sa.BigInteger, nullable=False),
    sa.Column("tests_key", sa.String(255), nullable=False),
    sa.Column("tests_bytes", sa.BigInteger, nullable=False),
    sa.Column("result_key", sa.String(255), nullable=False),
    sa.Column("result_bytes", sa.BigInteger, nullable=False),
    sa.Column("tier", sa.String(8), nullable=False),
)


@attrs.frozen(kw_only=True)
class Record:
    """The metadata of one stored submission (a row); blobs are read through the Store.

    Times in seconds, memory in bytes (the largest over the tests); ``*_bytes`` are the
    blobs' sizes before compression; ``tier`` is where the record's blobs are: ``"hot"``
    or ``"cold"``.
    """

    id: str
    created_at: dt.datetime
    user_id: str | None
    problem_id: str | None
    language: str
    verdict: str
    fingerprint: str
    backend: str
    cached: bool
    tests_total: int
    tests_passed: int
    cpu_time: float
    wall_time: float
    memory_peak: int
    queue_time: float
    total_time: float
    code_key: str
    code_bytes: int
    tests_key: str
    tests_bytes: int
    result_key: str
    result_bytes: int
    tier: str

    def to_row(self) -> dict[str, Any]:
        # Not attrs.asdict: that recurses and checks every value, 5x slower per row.
        return {name: getattr(self, name) for name in _RECORD_FIELDS}

    @classmethod
    def from_row(cls, row: Any) -> Record:
        return cls(**dict(row._mapping))


_RECORD_FIELDS = tuple(f.name for f in attrs.fields(Record))


@attrs.frozen
class Page:
    """One page of records, newest first; pass ``next`` as ``cursor`` for the next page
    (None: this was the last)."""

    records: tuple[Record, ...]
    next: str | None

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


def encode_cursor(record: Record) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, ident = json.loads(raw)
        when = dt.datetime.fromisoformat(created)
    except (ValueError, TypeError) as exc:
        raise StorageConfigError(f"not a cursor this store made: {cursor!r}") from exc
    if when.tzinfo is None:  # every cursor this store makes carries UTC
        raise StorageConfigError(f"not a cursor this store made: {cursor!r}")
    return when, str(ident)


def month_start(when: dt.datetime) -> dt.datetime:
    when = when.astimezone(UTC)
    return dt.datetime(when.year, when.month, 1, tzinfo=UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


class MetadataStore:
    """Submission rows in a SQL database.

    :param url: an SQLAlchemy URL: ``sqlite:///codeexec.db`` (the default),
        ``postgresql://user@host/db``; or pass ``engine``.
    :param migrate: bring the schema to the newest version now (Alembic ``upgrade
        head``; safe when several processes do it at once).
    :param partitions_ahead: on PostgreSQL, monthly partitions kept ready beyond the
        current month.
    :param fsync: on SQLite, fsync every commit (``synchronous=FULL``), so a commit
        survives a power cut and not only a crash of the process.
    :param create: False refuses a database without the submissions table (a
        mistyped URL) with :class:`StorageConfigError`, instead of making one.
    """

    def __init__(
        self,
        url: str = "sqlite:///codeexec.db",
        *,
        engine: sa.Engine | None = None,
        migrate: bool = True,
        partitions_ahead: int = 3,
        fsync: bool = False,
        create: bool = True,
    ) -> None:
        if engine is None:
            engine = create_engine(url, sqlite_synchronous="FULL" if fsync else "NORMAL")
        self.engine = engine
        self.dialect = self.engine.dialect.name
        self.partitions_ahead = partitions_ahead
        self._partitions: set[dt.datetime] = set()  # month starts known to exist
        database = self.engine.url.database
        in_memory = self.dialect == "sqlite" and database in (None, "", ":memory:")
        # In-memory SQLite is one connection shared by all threads: one transaction at
        # a time. Anything else has a connection per transaction.
        self._serial: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if in_memory else contextlib.nullcontext()
        )
        self._lock_path = (
            f"{database}.codeexec-lock" if self.dialect == "sqlite" and not in_memory else None
        )
        if self.dialect == "sqlite" and not in_memory and database:
            if not create and not os.path.exists(database):
                raise StorageConfigError(f"no store here: the database {database} does not exist")
            # Owner-only from the start (SQLite gives its -wal and -shm files the
            # database's mode): other users' submissions are not for anyone to read.
            with contextlib.suppress(OSError):
                os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        if not create:
            with self._connect() as conn:
                if not sa.inspect(conn).has_table(TABLE):
                    self.engine.dispose()
                    raise StorageConfigError(
                        f"no store here: {self.engine.url.render_as_string()} has no {TABLE} table"
                    )
        if migrate:
            self.migrate()

    # -------------------------------------------------------------- schema

    def migrate(self) -> None:
        """Upgrade the schema to the newest version, then make the coming partitions."""
        config = Config()
        config.set_main_option(
            "script_location", str(resources.files("codeexec.storage") / "migrations")
        )
        with self._connect() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        now = dt.datetime.now(UTC)
        months = [month_start(now)]
        for _ in range(self.partitions_ahead):
            months.append(next_month(months[-1]))
        self.ensure_partitions(months)

    def ensure_partitions(self, months: Iterable[dt.datetime]) -> None:
        """On PostgreSQL, make the monthly partitions holding these instants (no-op
        elsewhere, and for partitions that exist)."""
        if self.dialect != "postgresql":
            return
        wanted = {month_start(m) for m in months} - self._partitions
        if not wanted:
            return
        with self._connect() as conn:
            # CREATE ... IF NOT EXISTS still races in the catalog: one at a time.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            for start in sorted(wanted):
                end = next_month(start)
                name = f"{TABLE}_y{start.year:04d}m{start.month:02d}"
                conn.execute(
                    sa.text(
                        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{TABLE}" '
                        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                    )
                )
        self._partitions |= wanted

    def partitions(self) -> list[str]:
        """The names of the table's partitions (PostgreSQL; empty elsewhere)."""
        if self.dialect != "postgresql":
            return []
        query = sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:t AS regclass) ORDER BY c.relname"
        )
        with self._connect() as conn:
            return [r[0] for r in conn.execute(query, {"t": TABLE})]

    # -------------------------------------------------------------- writes

    def insert(self, rows: Sequence[Record], write_blobs: Callable[[], None]) -> None:
        """Insert ``rows`` in one transaction, after ``write_blobs()`` has written their
        blobs, all under the shared blob guard. Rows already there (a replay: the same
        id and ``created_at``) are left as they are."""
        if not rows:
            return
        self.ensure_partitions(r.created_at for r in rows)
        with self._connect() as conn, self.blob_guard(conn, exclusive=False):
            write_blobs()
            conn.execute(self._insert_ignoring_duplicates(), [r.to_row() for r in rows])

    def _insert_ignoring_duplicates(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(submissions).on_conflict_do_nothing()
        if self.dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            return sqlite.insert(submissions).on_conflict_do_nothing()
        return submissions.insert().prefix_with("IGNORE")  # MySQL / MariaDB

    def set_tier(self, records: Iterable[Record], tier: str) -> None:
        """Mark these records' blobs as being in ``tier`` (each revision on its own)."""
        keys = _revision_keys(records)
        if keys:
            with self._connect() as conn:
                conn.execute(submissions.update().where(_revision_in(keys)).values(tier=tier))

    def delete(self, conn: sa.Connection, records: Iterable[Record]) -> None:
        """Delete these records' rows (each revision on its own) in ``conn``'s
        transaction."""
        keys = _revision_keys(records)
        if keys:
            conn.execute(submissions.delete().where(_revision_in(keys)))

    def unreferenced(self, conn: sa.Connection, keys: Iterable[str]) -> set[str]:
        """Of ``keys`` (content-addressed blob keys), those no row references."""
        keys = set(keys)
        if not keys:
            return set()
        t = submissions
        used = set(conn.scalars(sa.select(t.c.code_key).where(t.c.code_key.in_(keys))))
        used |= set(conn.scalars(sa.select(t.c.tests_key).where(t.c.tests_key.in_(keys))))
        return keys - used

    @contextlib.contextmanager
    def blob_guard(self, conn: sa.Connection, *, exclusive: bool) -> Iterator[None]:
        """Hold the blob lock (see the module docstring) until ``conn`` commits."""
        if self.dialect == "postgresql":
            fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": _BLOB_LOCK})
            yield
        elif self._lock_path is not None:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                os.close(fd)
        else:  # in-memory SQLite: one process, and _connect already serializes
            yield

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        """A connection in a transaction; database faults become StorageUnavailableError."""
        try:
            with self._serial, self.engine.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise StorageUnavailableError(
                f"database {self.engine.url.render_as_string()} failed: {exc.orig}"
            ) from exc

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """A connection in a transaction that commits on leaving the block."""
        return self._connect()

    # -------------------------------------------------------------- reads

    def get(self, ident: str) -> Record | None:
        """The newest revision of the record with this id (None if there is none)."""
        t = submissions
        statement = sa.select(t).where(t.c.id == ident).order_by(t.c.created_at.desc()).limit(1)
        with self._connect() as conn:
            row = conn.execute(statement).first()
        return None if row is None else Record.from_row(row)

    def revisions(self, ident: str) -> list[Record]:
        """Every revision of the record with this id, oldest first."""
        t = submissions
        statement = sa.select(t).where(t.c.id == ident).order_by(t.c.created_at)
        with self._connect() as conn:
            return [Record.from_row(r) for r in conn.execute(statement)]

    def query_statement(
        self,
        *,
        user_id: str | None = None,
        problem_id: str | None = None,
        verdict: str | None = None,
        language: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> sa.Select[Any]:
        """The SELECT behind :meth:`query` (for EXPLAIN)."""
        t = submissions
        statement = sa.select(t)
        for column, value in (
            (t.c.user_id, user_id),
            (t.c.problem_id, problem_id),
            (t.c.verdict, verdict),
            (t.c.language, language),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if since is not None:
            statement = statement.where(t.c.created_at >= _aware(since))
        if until is not None:
            statement = statement.where(t.c.created_at < _aware(until))
        if cursor is not None:
            created, ident = decode_cursor(cursor)
            statement = statement.where(
                sa.or_(
                    t.c.created_at < created,
                    sa.and_(t.c.created_at == created, t.c.id < ident),
                )
            )
        return statement.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)

    def query(self, **filters: Any) -> Page:
        """Records matching every filter given, newest first; see :meth:`Store.query`."""
        limit = filters.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise StorageConfigError(f"limit must be an int from 1 to 10000, got {limit!r}")
        statement = self.query_statement(**{**filters, "limit": limit + 1})
        with self._connect() as conn:
            records = [Record.from_row(r) for r in conn.execute(statement)]
        more = len(records) > limit
        records = records[:limit]
        return Page(tuple(records), encode_cursor(records[-1]) if more else None)

    def explain(self, **filters: Any) -> str:
        """The database's plan for :meth:`query` with these filters, as text."""
        statement = self.query_statement(**filters)
        compiled = statement.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.dialect == "sqlite" else "EXPLAIN "
        with self._connect() as conn:
            rows = conn.exec_driver_sql(prefix + str(compiled)).all()
        return "\n".join(" ".join(str(c) for c in row) for row in rows)

    def oldest(self, before: dt.datetime, limit: int, *, tier: str | None = None) -> list[Record]:
        """Up to ``limit`` records created before ``before`` (in ``tier`` if given),
        oldest first: the lifecycle's next batch."""
        t = submissions
        statement = sa.select(t).where(t.c.created_at < _aware(before))
        if tier is not None:
            statement = statement.where(t.c.tier == tier)
        statement = statement.order_by(t.c.created_at, t.c.id).limit(limit)
        with self._connect() as conn:
            return [Record.from_row(r) for r in conn.execute(statement)]

    def count(self) -> int:
        with self._connect() as conn:
            return int(conn.scalar(sa.select(sa.func.count()).select_from(submissions)) or 0)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"MetadataStore({self.engine.url.render_as_string()!r})"


def _revision_keys(records: Iterable[Record]) -> list[tuple[str, dt.datetime]]:
    return [(r.id, r.created_at) for r in records]


def _revision_in(keys: Sequence[tuple[str, dt.datetime]]) -> Any:
    """A WHERE clause for these (id, created_at) pairs: one revision each."""
    t = submissions
    return sa.tuple_(t.c.id, t.c.created_at).in_(keys)


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise StorageConfigError(f"give times with a time zone (UTC), got naive {when}")
    return when
