"""The store on its embedded defaults: SQLite and a local hot tier (no server needed)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import codeexec
from codeexec import (
    RecordNotFoundError,
    StorageConfigError,
    StorageUnavailableError,
)
from codeexec.storage import Store
from codeexec.storage._blobs import decompress
from storage_helpers import UTC, days_ago, result, submission

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = Store.at(tmp_path, flush_interval=0.05)
    yield s
    s.close()


def blob_files(tmp_path: Path, kind: str) -> list[Path]:
    return [p for p in (tmp_path / "blobs" / kind).rglob("*") if p.is_file()]


def test_round_trip_keeps_submission_and_result(store):
    sub, res = submission(), result("wrong_answer", stdout="x" * 5000)
    ident = store.save(sub, res)
    assert store.flush(10)
    stored = store.get(ident)
    assert stored.submission == sub
    assert stored.submission.metadata == sub.metadata
    assert stored.result == res
    record = stored.record
    assert (record.user_id, record.problem_id, record.language) == ("alice", "echo", "python")
    assert record.verdict == "wrong_answer"
    assert (record.tests_total, record.tests_passed) == (2, 1)
    assert record.cpu_time == pytest.approx(0.04)
    assert record.memory_peak == (9 << 20) + 1
    assert record.fingerprint == res.fingerprint
    assert record.tier == "hot"


def test_a_record_is_readable_before_it_is_stored(tmp_path):
    with Store.at(tmp_path, flush_interval=3600, batch_size=1000) as store:
        ident = store.save(submission(), result())
        assert store.pending == 1
        assert store.get(ident).result.verdict == "accepted"
        assert store.record(ident).id == ident
        assert store.meta.count() == 0  # only journaled so far
        assert store.flush(10) and store.pending == 0
        assert store.meta.count() == 1


def test_unknown_id_is_a_typed_error(store):
    with pytest.raises(RecordNotFoundError) as info:
        store.get("0123456789abcdef")
    assert isinstance(info.value, KeyError)


def test_same_code_and_tests_are_stored_once(store, tmp_path):
    ids = [store.save(submission(user=f"u{i}"), result()) for i in range(40)]
    ids.append(store.save(submission("print(2)"), result()))
    assert store.flush(10)
    assert len(blob_files(tmp_path, "code")) == 2
    assert len(blob_files(tmp_path, "tests")) == 1
    assert len(blob_files(tmp_path, "results")) == 41
    assert {store.record(i).code_key for i in ids[:40]} == {store.record(ids[0]).code_key}
    assert store.get(ids[-1]).submission.code == b"print(2)"


@pytest.mark.parametrize(
    ("codec", "magic"), [("zstd", b"\x28\xb5\x2f\xfd"), ("gzip", b"\x1f\x8b"), ("none", b"{")]
)
def test_blobs_are_compressed_and_any_codec_reads_back(tmp_path, codec, magic):
    with Store.at(tmp_path, compression=codec) as store:
        ident = store.save(submission(), result(stdout="line\n" * 20000))
        store.flush(10)
        path = tmp_path / "blobs" / store.record(ident).result_key
        raw = path.read_bytes()
        assert raw.startswith(magic)
        if codec != "none":
            assert len(raw) * 20 < store.record(ident).result_bytes
    # A store with another codec reads what this one wrote.
    with Store.at(tmp_path, compression="zstd") as store:
        assert store.get(ident).result.tests[0].stdout == "line\n" * 20000
        assert json.loads(decompress(raw))["result"]["verdict"] == "accepted"


def test_query_filters(store):
    now = dt.datetime.now(UTC)
    store.save(submission(user="a", problem="p1"), result(), created_at=days_ago(3, now))
    store.save(
        submission(user="a", problem="p2"), result("wrong_answer"), created_at=days_ago(2, now)
    )
    store.save(submission(user="b", problem="p1", language="bash", code="echo"), result(),
               created_at=days_ago(1, now))  # fmt: skip
    store.flush(10)

    def users(**filters):
        return [(r.user_id, r.problem_id) for r in store.query(**filters)]

    assert users(user_id="a") == [("a", "p2"), ("a", "p1")]
    assert users(problem_id="p1") == [("b", "p1"), ("a", "p1")]
    assert users(verdict="wrong_answer") == [("a", "p2")]
    assert users(verdict=codeexec.Verdict.ACCEPTED, user_id="a") == [("a", "p1")]
    assert users(language="bash") == [("b", "p1")]
    assert users(since=days_ago(2.5, now)) == [("b", "p1"), ("a", "p2")]
    assert users(since=days_ago(2.5, now), until=days_ago(1.5, now)) == [("a", "p2")]
    assert users(user_id="nobody") == []


def test_keyset_pages_cover_everything_once_newest_first(store):
    now = dt.datetime.now(UTC)
    # Equal timestamps in groups of three: the id breaks the ties.
    for i in range(237):
        store.save(submission(user="pager"), result(), created_at=days_ago(i // 3, now))
    store.flush(30)
    seen, cursor, pages = [], None, 0
    while True:
        page = store.query(user_id="pager", limit=50, cursor=cursor)
        seen.extend(page.records)
        pages += 1
        if pages == 2:  # a record added meanwhile (newest) does not shift later pages
            store.save(submission(user="pager"), result())
            store.flush(10)
        if page.next is None:
            break
        cursor = page.next
    assert pages == 5
    assert len(seen) == len({r.id for r in seen}) == 237
    keys = [(r.created_at, r.id) for r in seen]
    assert keys == sorted(keys, reverse=True)


def test_sqlite_pages_come_from_the_indexes(store):
    for column in ("user_id", "problem_id"):
        plan = store.meta.explain(**{column: "x"})
        name = "user" if column == "user_id" else "problem"
        assert f"USING INDEX ix_codeexec_submissions_{name}_created" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # the index gives the order: no sort


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hot": "nosuchscheme://bucket/x"}, "Protocol not known"),
        ({"db": "nosuchdb://x"}, "cannot use database URL"),
        ({"compression": "lz5"}, "compression must be"),
        ({"durability": "maybe"}, "durability must be"),
        ({"hot": "memory://x", "durability": "journal"}, "needs a journal directory"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_configuration_is_a_typed_error_before_anything_is_written(tmp_path, kwargs, message):
    options = {"db": f"sqlite:///{tmp_path}/m.db", "hot": str(tmp_path / "hot")} | kwargs
    with pytest.raises(StorageConfigError, match=message):
        Store(**options)
    assert not (tmp_path / "m.db").exists()
    assert not (tmp_path / "hot").exists() or not any((tmp_path / "hot").iterdir())


@pytest.mark.parametrize(
    "ident", ["../../etc/passwd", "a/b", "", ".hidden", "x" * 65, "id with space"]
)
def test_ids_that_could_escape_the_blob_tree_are_refused(store, ident):
    with pytest.raises(StorageConfigError, match="record id"):
        store.save(submission(), result(), id=ident)
    assert store.pending == 0


def test_other_bad_input(store):
    with pytest.raises(StorageConfigError, match="time zone"):
        store.save(submission(), result(), created_at=dt.datetime(2026, 1, 1))
    with pytest.raises(StorageConfigError, match="Submission and its Result"):
        store.save({"language": "python"}, result())  # type: ignore[arg-type]
    with pytest.raises(StorageConfigError, match="longer than"):
        store.save(submission(user="u" * 300), result())
    with pytest.raises(StorageConfigError, match="limit"):
        store.query(limit=0)
    with pytest.raises(StorageConfigError, match="cursor"):
        store.query(cursor="not-a-cursor")
    with pytest.raises(StorageConfigError, match="time zone"):
        store.query(since=dt.datetime(2026, 1, 1))
    with pytest.raises(StorageConfigError, match="cold tier"):
        store.lifecycle(move_after=1)
    assert store.pending == 0


def test_host_ids_are_kept(store):
    sub = submission()
    sub = codeexec.Submission(
        language=sub.language, code=sub.code, metadata={"submission_id": "judge-42"}
    )
    assert store.save(sub, result()) == "judge-42"
    assert store.save(submission(), result(), id="explicit.1") == "explicit.1"
    store.flush(10)
    assert store.get("judge-42").submission.metadata["submission_id"] == "judge-42"


# ---------------------------------------------------------------------- durability

CRASHER = textwrap.dedent(
    """
    import json, os, signal, sys
    sys.path.insert(0, {tests!r})
    from storage_helpers import result, submission
    from codeexec.storage import Store

    store = Store.at({directory!r}, flush_interval=3600, batch_size=10000)
    ids = [store.save(submission(user="crash", code=f"print({{i}})"), result(stdout=str(i)))
           for i in range(300)]
    print(json.dumps(ids), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no close, no flush, no atexit
    """
)


def test_accepted_records_survive_a_crash_of_the_host(tmp_path):
    script = CRASHER.format(tests=str(ROOT / "tests"), directory=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = json.loads(proc.stdout)
    journal = list((tmp_path / "blobs" / ".journal").iterdir())
    assert journal, "the crash left no journal"
    with Store.at(tmp_path) as store:
        assert store.flush(30)
        assert store.meta.count() == 300
        for i in (0, 150, 299):
            stored = store.get(ids[i])
            assert stored.submission.code == f"print({i})".encode()
            assert stored.result.tests[0].stdout == str(i)
    assert not list((tmp_path / "blobs" / ".journal").iterdir())  # settled and removed


def test_a_torn_last_line_is_skipped_and_the_rest_replayed(tmp_path):
    script = CRASHER.format(tests=str(ROOT / "tests"), directory=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    (segment,) = (tmp_path / "blobs" / ".journal").iterdir()
    with segment.open("ab") as f:
        f.write(b'{"id": "torn", "created_')  # the crash hit mid-write
    with Store.at(tmp_path) as store:
        assert store.flush(30)
        assert store.meta.count() == 300


def test_a_live_store_s_journal_is_not_adopted_by_another(tmp_path):
    first = Store.at(tmp_path, flush_interval=3600, batch_size=1000)
    try:
        ids = [first.save(submission(), result()) for _ in range(5)]
        with Store.at(tmp_path) as second:
            assert second.pending == 0
        assert first.pending == 5
    finally:
        assert first.close()
    with Store.at(tmp_path) as again:
        assert again.meta.count() == 5
        assert all(again.record(i) for i in ids)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_a_typed_error_and_loses_nothing_stored(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        store = Store.at(disk, flush_interval=0.01, save_timeout=5)
        before = store.save(submission(code="print('before')"), result(stdout="kept"))
        assert store.flush(10)
        filler = disk / "filler"
        accepted, error = [], None
        with filler.open("wb") as f:  # fill what is left
            try:
                while True:
                    f.write(os.urandom(64 << 10))
                    f.flush()
            except OSError:
                pass
        for i in range(50):
            try:
                accepted.append(
                    store.save(
                        submission(code=f"print({i})"), result(stdout=os.urandom(20000).hex())
                    )
                )
            except StorageUnavailableError as exc:
                error = exc
                break
        assert error is not None and "No space left" in str(error)
        filler.unlink()
        assert store.flush(30), store._writer.last_error
        assert store.get(before).result.tests[0].stdout == "kept"
        for ident in accepted:
            assert store.get(ident).record.id == ident
        leftovers = [p for p in disk.rglob("*") if ".tmp-" in p.name]
        assert leftovers == []
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# ---------------------------------------------------------------------- the executor


def test_executor_stores_every_submission(tmp_path, process_sandbox):
    with codeexec.Executor(process_sandbox, store=str(tmp_path), cache="memory://") as ex:
        sub = codeexec.Submission(
            language="python",
            code="print(input()[::-1])",
            tests=[codeexec.TestCase(stdin="abc", expected="cba")],
            metadata={"user_id": "exec-user", "problem_id": "reverse"},
        )
        first, second = ex.run(sub), ex.run(sub)
        bad = ex.run(
            codeexec.Submission(language="python", code="print(", metadata={"user_id": "exec-user"})
        )
        assert first.metadata["submission_id"] != second.metadata["submission_id"]
        assert (first.cached, second.cached) == (False, True)
        store = ex.store
        assert store.flush(10)
        records = store.query(user_id="exec-user").records
        assert [r.verdict for r in records] == ["compilation_error", "accepted", "accepted"]
        assert [r.cached for r in records] == [False, True, False]
        stored = store.get(first.metadata["submission_id"])
        assert stored.result.tests[0].stdout == "cba\n"
        assert stored.submission.code == b"print(input()[::-1])"
        assert records[0].id == bad.metadata["submission_id"]
    # The executor made the store from a directory, so it closed it.
    with Store.at(tmp_path) as reopened:
        assert reopened.meta.count() == 3


def test_executor_rejects_a_bad_store():
    with pytest.raises(StorageConfigError):
        codeexec.Executor(store="sqlite:///x.db")
    with pytest.raises(StorageConfigError):
        codeexec.Executor(store=42)


def test_a_record_the_database_refuses_is_set_aside_and_the_rest_stored(tmp_path):
    journal = tmp_path / "blobs" / ".journal"
    journal.mkdir(parents=True)
    good = {
        "id": "good-1",
        "created_at": dt.datetime.now(UTC).isoformat(),
        "submission": submission().to_dict(),
        "result": result().to_dict(),
    }
    damaged = {"id": "damaged-1", "created_at": good["created_at"]}  # no submission
    lines = [json.dumps(e) for e in (good, damaged, dict(good, id="good-2"))]
    (journal / "1-dead.journal").write_text("\n".join(lines) + "\n")
    with Store.at(tmp_path) as store:
        assert store.flush(30)
        assert store.meta.count() == 2
        assert store.get("good-2").result == codeexec.Result.from_dict(good["result"])
    rejected = json.loads((journal / "rejected" / "damaged-1.json").read_text())
    assert rejected["entry"] == damaged and "KeyError" in rejected["error"]
    assert not (journal / "1-dead.journal").exists()


def test_a_lost_blob_is_a_typed_error(store, tmp_path):
    ident = store.save(submission(), result())
    store.flush(10)
    (tmp_path / "blobs" / store.record(ident).result_key).unlink()
    with pytest.raises(codeexec.StorageError, match="neither tier"):
        store.get(ident)


def test_lifecycle_deletion_waits_for_a_writer_holding_the_blob_guard(tmp_path):
    import threading

    with Store.at(tmp_path) as store:
        ident = store.save(submission("print('old')"), result(), created_at=days_ago(400))
        store.flush(10)
        code_key = store.record(ident).code_key
        holding, release = threading.Event(), threading.Event()

        def writer() -> None:  # a write-behind batch of another process, mid-write
            with store.meta.transaction() as conn, store.meta.blob_guard(conn, exclusive=False):
                holding.set()
                release.wait(10)

        thread = threading.Thread(target=writer)
        thread.start()
        holding.wait(10)
        reports = []
        deleter = threading.Thread(target=lambda: reports.append(store.lifecycle(delete_after=365)))
        deleter.start()
        deleter.join(0.5)
        assert deleter.is_alive()  # waits for the writer's batch to commit
        assert store.blobs.locate(code_key) == "hot"
        release.set()
        thread.join(10)
        deleter.join(10)
        assert reports[0].records_deleted == 1
        assert store.blobs.locate(code_key) is None


def test_saving_an_id_again_keeps_a_revision_beside_the_old_one(store):
    """A rejudge under the same submission_id was dropped silently (insert-ignore)."""
    sub = codeexec.Submission(
        language="python", code="print(1)", metadata={"submission_id": "judge-7"}
    )
    assert store.save(sub, result("wrong_answer")) == "judge-7"
    assert store.save(sub, result("accepted")) == "judge-7"  # pending beside the first
    assert [r.verdict for r in store.revisions("judge-7")] == ["wrong_answer", "accepted"]
    assert store.flush(10)
    store.save(sub, result("time_limit_exceeded"))
    assert store.flush(10)
    revisions = store.revisions("judge-7")
    assert [r.verdict for r in revisions] == ["wrong_answer", "accepted", "time_limit_exceeded"]
    assert len({r.result_key for r in revisions}) == 3  # each keeps its own full result
    assert store.get("judge-7").result.verdict == "time_limit_exceeded"  # the newest
    assert store.get("judge-7", revision=1).result.verdict == "wrong_answer"
    assert store.get("judge-7", revision=-2).result.verdict == "accepted"
    assert store.record("judge-7").verdict == "time_limit_exceeded"
    assert len(store.query().records) == 3
    with pytest.raises(RecordNotFoundError, match="3 revision"):
        store.get("judge-7", revision=4)
    with pytest.raises(StorageConfigError):
        store.get("judge-7", revision=0)


def test_the_lifecycle_deletes_and_moves_one_revision_not_its_id(tmp_path):
    now = dt.datetime.now(UTC)
    sub = codeexec.Submission(language="python", code="print(1)")
    with Store.at(tmp_path) as store:
        store.save(sub, result("wrong_answer"), id="r1", created_at=now - dt.timedelta(days=40))
        store.save(sub, result("accepted"), id="r1", created_at=now)
        assert store.flush(10)
        report = store.lifecycle(delete_after=30, now=now)
        assert report.records_deleted == 1
        assert [r.verdict for r in store.revisions("r1")] == ["accepted"]
        assert store.get("r1").result.verdict == "accepted"  # its blobs are all there


def test_a_stored_submission_comes_back_byte_for_byte(store):
    sub = codeexec.Submission(
        language="python",
        code='print("café 日本")',
        files=[codeexec.File("data.bin", bytes(range(256)), executable=True)],
        tests=[codeexec.TestCase(stdin=b"\xff\x00", expected="ñ\n", name="ü")],
        checker=codeexec.FloatChecker(abs_tol=0.5),
        metadata={"user_id": "ü", "tags": ["a", {"n": 1.5}]},
    )
    ident = store.save(sub, result())
    assert store.get(ident).submission == sub  # pending
    assert store.flush(10)
    stored = store.get(ident).submission
    assert stored == sub and stored.code == 'print("café 日本")'.encode()
    assert stored.metadata == {"user_id": "ü", "tags": ["a", {"n": 1.5}]}


def test_a_callable_checker_comes_back_as_its_record(store):
    checker = codeexec.CallableChecker(lambda out, exp, test: True, identity="mine-v1")
    sub = codeexec.Submission(language="python", code="print(1)", checker=checker)
    ident = store.save(sub, result())
    assert store.flush(10)
    stored = store.get(ident).submission
    assert stored.checker == codeexec.RecordedChecker("mine-v1")
    assert stored.code == sub.code


def test_records_written_in_the_first_format_still_read_back(store):
    """Records journaled or stored before format 2 held bytes as latin-1 text."""
    data = submission(code="print('é')").to_dict()
    del data["format"]
    data["code"] = "print('é')".encode().decode("latin-1")
    data["tests"][0]["stdin"] = "é".encode().decode("latin-1")
    back = codeexec.Submission.from_dict(data)
    assert back.code == "print('é')".encode() and back.tests[0].stdin == "é".encode()


def test_ids_are_uuid7(store):
    import uuid

    ident = store.save(submission(), result())
    parsed = uuid.UUID(hex=ident)
    assert parsed.version == 7 and len(ident) == 32


def test_a_bad_record_id_is_refused_before_the_program_runs(tmp_path, process_sandbox):
    ran = tmp_path / "ran"
    code = f"open({str(ran)!r}, 'w').write('x')"
    with codeexec.Executor(process_sandbox, store=tmp_path / "store") as ex:
        for metadata in ({"submission_id": "../../etc"}, {"user_id": "u" * 300}):
            sub = codeexec.Submission(language="python", code=code, metadata=metadata)
            with pytest.raises(StorageConfigError):
                ex.run(sub)
            with pytest.raises(StorageConfigError):
                ex.submit(sub)
    assert not ran.exists()
