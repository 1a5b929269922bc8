"""The store on a real PostgreSQL (partitions, plans at 100,000 rows, the database going
down and coming back) and the same plans on SQLite."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from codeexec import StoreFullError
from codeexec.storage import MetadataStore, Record, Store
from services import PostgresServer
from storage_helpers import UTC, result, submission

ROWS = 100_000


def fresh_database(server: PostgresServer) -> str:
    name = f"t_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(server.url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return server.url.rsplit("/", 1)[0] + "/" + name


def synthetic_records(n: int, now: dt.datetime) -> list[Record]:
    """``n`` rows over the last year: 1,000 users, 200 problems."""
    rows = []
    for i in range(n):
        created = now - dt.timedelta(seconds=i * 311)  # ~1 year for 100k rows
        rows.append(
            Record(
                id=f"{i:012x}{uuid.uuid4().hex[:20]}",
                created_at=created,
                user_id=f"user{i % 1000}",
                problem_id=f"problem{i % 200}",
                language="python",
                verdict="accepted" if i % 3 else "wrong_answer",
                fingerprint="f" * 64,
                backend="process",
                cached=False,
                tests_total=3,
                tests_passed=3,
                cpu_time=0.01,
                wall_time=0.02,
                memory_peak=1 << 20,
                queue_time=0.0,
                total_time=0.03,
                code_key=f"code/{i % 5000}",
                code_bytes=10,
                tests_key=f"tests/{i % 200}",
                tests_bytes=10,
                result_key=f"results/{i}",
                result_bytes=10,
                tier="hot",
            )
        )
    return rows


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def big(request, tmp_path_factory):
    """A metadata store holding 100,000 rows."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('big')}/m.db"
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"))
    meta = MetadataStore(url)
    rows = synthetic_records(ROWS, dt.datetime.now(UTC))
    for start in range(0, ROWS, 10_000):
        meta.insert(rows[start : start + 10_000], lambda: None)
    with meta.transaction() as conn:
        conn.exec_driver_sql("ANALYZE")
    yield meta
    meta.close()


@pytest.mark.parametrize("column", ["user_id", "problem_id"])
def test_the_newest_50_of_one_key_come_through_an_index(big, column):
    value = "user7" if column == "user_id" else "problem7"
    plan = big.explain(**{column: value})
    print(f"\n{big.dialect} plan for {column}:\n{plan}")
    index = "user_created" if column == "user_id" else "problem_created"
    if big.dialect == "sqlite":
        assert f"USING INDEX ix_codeexec_submissions_{index}" in plan
        assert "TEMP B-TREE" not in plan
    else:
        assert "Index Scan Backward" in plan
        assert "Seq Scan" not in plan and "Sort" not in plan
    started = time.perf_counter()
    page = big.query(**{column: value}, limit=50)
    elapsed = time.perf_counter() - started
    print(f"{big.dialect}: 50 newest of {column}={value} in {elapsed * 1000:.2f} ms")
    assert len(page) == 50
    assert all(getattr(r, column) == value for r in page)
    keys = [(r.created_at, r.id) for r in page]
    assert keys == sorted(keys, reverse=True)
    # The second page starts right after the first.
    second = big.query(**{column: value}, limit=50, cursor=page.next)
    assert (second.records[0].created_at, second.records[0].id) < keys[-1]


def test_postgres_table_is_partitioned_by_month(postgres_server):
    meta = MetadataStore(fresh_database(postgres_server), partitions_ahead=2)
    try:
        now = dt.datetime.now(UTC)
        this_month = f"y{now.year:04d}m{now.month:02d}"
        names = meta.partitions()
        assert len(names) == 3 and names[0].endswith(this_month)
        old = synthetic_records(3, dt.datetime(2023, 5, 20, tzinfo=UTC))
        meta.insert(old, lambda: None)
        assert "codeexec_submissions_y2023m05" in meta.partitions()
        plan = meta.explain(
            since=dt.datetime(2023, 5, 1, tzinfo=UTC), until=dt.datetime(2023, 6, 1, tzinfo=UTC)
        )
        assert "y2023m05" in plan and this_month not in plan  # pruned to one partition
        with meta.transaction() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM codeexec_alembic_version")
            assert version.scalar() == "0001"
    finally:
        meta.close()


def test_migrations_from_many_processes_at_once_are_safe(postgres_server):
    url = fresh_database(postgres_server)
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            MetadataStore(url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert MetadataStore(url).count() == 0


@pytest.fixture
def own_postgres():
    """A PostgreSQL this test may kill and restart (what it committed survives)."""
    server = PostgresServer(synchronous_commit=True).start()
    yield server
    server.stop()


def test_saves_go_on_while_the_database_is_down(own_postgres, tmp_path):
    store = Store(own_postgres.url, str(tmp_path / "hot"), flush_interval=0.02)
    try:
        for _ in range(20):
            store.save(submission(), result())
        assert store.flush(10)
        own_postgres.kill()
        late = [store.save(submission(user="late"), result()) for _ in range(30)]
        assert not store.flush(1)
        assert store.pending == 30
        assert store.get(late[0]).record.user_id == "late"  # readable from the queue
        own_postgres.start()
        assert store.flush(30)
        assert store.meta.count() == 50
        assert len(store.query(user_id="late")) == 30
    finally:
        store.close()


def test_a_full_queue_is_backpressure_and_close_keeps_the_rest(own_postgres, tmp_path):
    store = Store(
        own_postgres.url,
        str(tmp_path / "hot"),
        batch_size=2,
        max_pending=4,
        save_timeout=0.3,
        flush_interval=0.01,
    )
    own_postgres.kill()
    accepted = [store.save(submission(), result()) for _ in range(4)]
    with pytest.raises(StoreFullError, match="4 records wait"):
        store.save(submission(), result())
    assert not store.close(timeout=0.5)  # the database is down: kept in the journal
    own_postgres.start()
    with Store(own_postgres.url, str(tmp_path / "hot")) as reopened:
        assert reopened.flush(30)
        assert {reopened.record(i).id for i in accepted} == set(accepted)
        assert reopened.meta.count() == 4
