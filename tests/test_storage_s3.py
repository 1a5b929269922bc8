"""The lifecycle with a cold tier on a real S3-compatible server (rclone serve s3)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid

import pytest

from codeexec import StorageConfigError, StorageUnavailableError
from codeexec.storage import Store
from services import free_port
from storage_helpers import UTC, days_ago, result, submission


@pytest.fixture
def cold_url(s3_server):
    return s3_server.bucket(f"cold-{uuid.uuid4().hex[:8]}") + "/codeexec"


@pytest.fixture
def store(tmp_path, s3_server, cold_url):
    s = Store(
        f"sqlite:///{tmp_path}/m.db",
        str(tmp_path / "hot"),
        cold_url,
        cold_options=s3_server.options,
        flush_interval=0.02,
    )
    yield s
    s.close()


def populate(store: Store, now: dt.datetime) -> dict[str, list[str]]:
    """10 records 100 days old, 10 of 40 days, 10 new; one code shared by all ages."""
    ids: dict[str, list[str]] = {"old": [], "middle": [], "new": []}
    for age, days in (("old", 100), ("middle", 40), ("new", 1)):
        for i in range(10):
            code = "print('shared')" if i == 0 else f"print('{age}{i}')"
            ids[age].append(
                store.save(
                    submission(code, user=age),
                    result(stdout=f"{age}{i}"),
                    created_at=days_ago(days, now) + dt.timedelta(seconds=i),
                )  # fmt: skip
            )
    assert store.flush(30)
    return ids


def test_lifecycle_moves_and_deletes_exactly_what_it_should_twice(store):
    now = dt.datetime.now(UTC)
    ids = populate(store, now)
    blobs = store.blobs
    before = {i: store.get(i) for i in ids["middle"] + ids["new"]}
    hot_bytes = {i: blobs.hot.get(store.record(i).result_key) for i in ids["middle"]}
    old_records = [store.record(i) for i in ids["old"]]

    report = store.lifecycle(move_after=30, delete_after=90, now=now)
    assert report.records_deleted == 10 and report.records_moved == 10
    assert report.missing == ()

    # Old: rows and result blobs gone from both tiers; their own code blobs gone;
    # the shared code blob is still used by younger records, so it is kept.
    for record in old_records:
        assert blobs.locate(record.result_key) is None
    assert [blobs.locate(r.code_key) for r in old_records[1:]] == [None] * 9
    assert blobs.locate(old_records[0].code_key) is not None
    assert store.query(user_id="old").records == ()
    # Middle: every blob in the cold tier only, rows marked cold, reads unchanged.
    for ident in ids["middle"]:
        record = store.record(ident)
        assert record.tier == "cold"
        for key in (record.result_key, record.tests_key):
            assert blobs.locate(key) == "cold"
        assert blobs.cold.get(record.result_key) == hot_bytes[ident]  # identical bytes
        assert store.get(ident) == attrs_evolve_tier(before[ident], "cold")
    # New: untouched.
    for ident in ids["new"]:
        assert store.record(ident).tier == "hot"
        assert blobs.locate(store.record(ident).result_key) == "hot"

    again = store.lifecycle(move_after=30, delete_after=90, now=now)
    assert (again.records_moved, again.records_deleted, again.blobs_moved, again.blobs_deleted) == (
        0, 0, 0, 0,
    )  # fmt: skip
    for ident in ids["middle"] + ids["new"]:
        assert store.get(ident).result == before[ident].result


def attrs_evolve_tier(stored, tier):
    import attrs

    return attrs.evolve(stored, record=attrs.evolve(stored.record, tier=tier))


def test_an_interrupted_move_is_finished_by_the_next_run(store):
    now = dt.datetime.now(UTC)
    ident = store.save(submission("print('interrupted')"), result(), created_at=days_ago(50, now))
    store.flush(10)
    record = store.record(ident)
    blobs = store.blobs
    # A run that died after copying one blob, and another that died after removing
    # the hot copy of a second blob but before marking the row.
    blobs.cold.put(record.result_key, blobs.hot.get(record.result_key))
    blobs.cold.put(record.code_key, blobs.hot.get(record.code_key))
    blobs.hot.delete(record.code_key)
    report = store.lifecycle(move_after=30, now=now)
    assert report.records_moved == 1 and report.missing == ()
    assert [blobs.locate(k) for k in (record.code_key, record.tests_key, record.result_key)] == [
        "cold", "cold", "cold",
    ]  # fmt: skip
    assert store.get(ident).submission.code == b"print('interrupted')"


def test_the_cli_runs_the_lifecycle(tmp_path, s3_server, cold_url):
    now = dt.datetime.now(UTC)
    db, hot = f"sqlite:///{tmp_path}/m.db", str(tmp_path / "hot")
    with Store(db, hot, cold_url, cold_options=s3_server.options) as store:
        populate(store, now)
    options = [f"--cold-option={k}={json.dumps(v)}" for k, v in s3_server.options.items()]
    base = [sys.executable, "-m", "codeexec._cli", "store"]
    common = ["--db", db, "--hot", hot, "--cold", cold_url, *options, "--json"]
    run = subprocess.run(
        [*base, "lifecycle", *common, "--move-after", "30", "--delete-after", "90"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["records_moved"] == 10
    listed = subprocess.run(
        [*base, "query", *common, "--user", "middle"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert {r["tier"] for r in json.loads(listed.stdout)["records"]} == {"cold"}


def test_an_unreachable_or_missing_bucket_is_a_clear_error(tmp_path, s3_server):
    dead = dict(
        s3_server.options,
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        config_kwargs={"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}},
    )
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="cannot write"):
        Store(f"sqlite:///{tmp_path}/m.db", str(tmp_path / "hot"), "s3://cold/x", cold_options=dead)
    assert time.monotonic() - started < 60
    with pytest.raises(StorageUnavailableError):
        Store(
            f"sqlite:///{tmp_path}/m.db",
            str(tmp_path / "hot"),
            "s3://no-such-bucket/x",
            cold_options=s3_server.options,
        )


def test_bad_lifecycle_ages_are_refused_before_anything_moves(store):
    ident = store.save(submission(), result(), created_at=days_ago(100))
    store.flush(10)
    for ages in ({"move_after": 30, "delete_after": 10}, {"move_after": -1}, {"delete_after": "x"}):
        with pytest.raises(StorageConfigError):
            store.lifecycle(**ages)
    assert store.record(ident).tier == "hot"
    assert store.blobs.locate(store.record(ident).result_key) == "hot"
