"""The Store: every submission and its result, kept (SQL rows + fsspec blobs).

What one saved submission becomes:

- a **row** (:class:`Record`) with what queries filter and show: user, problem,
  language, verdict, times, memory, and where its blobs are;
- a **code blob** ``code/<sha256>``: the source files; content-addressed, so the same
  code sent a thousand times is stored once;
- a **tests blob** ``tests/<sha256>``: the tests (shared by every submission to a
  problem, so content-addressed too);
- a **result blob** ``results/YYYY/MM/DD/<id>.<time>``: the rest of the submission
  (limits, checker, metadata) and the full result with every test's stdout and stderr.

Saving an id that is stored already keeps a new **revision** beside the old ones (a
rejudge): :meth:`Store.get` gives the newest, :meth:`Store.revisions` lists them all,
and queries list each revision as a record of its own. Revisions are told apart by
``created_at``.

:meth:`Store.save` returns as soon as the record is journaled (see ``_journal``); a
background thread stores records in batches. Reads see records that are accepted but
not stored yet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import uuid_utils
from cachetools import LRUCache

from .._errors import RecordNotFoundError, StorageConfigError, StorageError
from .._model import Result, Submission, Verdict
from ._blobs import BlobStore, BlobTier, Compression
from ._journal import Journal
from ._lifecycle import LifecycleReport, run_lifecycle
from ._metadata import UTC, MetadataStore, Page, Record
from ._writer import WriteBehind

__all__ = ["StoredSubmission", "Store", "new_id"]

Durability = Literal["journal", "fsync", "none"]

_VERDICTS = frozenset(v.value for v in Verdict)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TEXT_MAX = 255
_NAME_MAX = 64


def new_id() -> str:
    """A new record id: a UUIDv7 (RFC 9562) as 32 hex digits, so ids sort by creation
    time (to the millisecond) and never collide."""
    return str(uuid_utils.uuid7().hex)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _content_key(kind: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f"{kind}/{digest[:2]}/{digest}"


@attrs.frozen
class StoredSubmission:
    """A stored submission, whole: its row, the :class:`~codeexec.Submission` as it was
    saved (byte for byte; a callable checker comes back as a
    :class:`~codeexec.RecordedChecker`), and its :class:`~codeexec.Result`."""

    record: Record
    submission: Submission
    result: Result


class Store:
    """Submissions and results in a SQL database and fsspec blob tiers.

    :param db: an SQLAlchemy URL (``sqlite:///codeexec.db``, ``postgresql://...``).
    :param hot: where new blobs go: a directory or an fsspec URL (``memory://x``).
    :param cold: where the lifecycle moves old blobs: an fsspec URL (``s3://bucket/p``),
        or None.
    :param hot_options: fsspec storage options of the hot tier.
    :param cold_options: those of the cold tier (s3fs: ``key``, ``secret``,
        ``endpoint_url``, ...).
    :param compression: ``"zstd"`` (default), ``"gzip"`` or ``"none"``.
    :param journal: the directory of the write-ahead journal (default: ``.journal`` in
        a local hot tier).
    :param durability: what an accepted save survives: ``"journal"`` (a crash of this
        process; the default when there is a journal), ``"fsync"`` (also a power cut;
        one fsync per save; SQLite commits and local blobs are fsynced too) or
        ``"none"`` (records waiting in memory are lost with the process; the default
        for a non-local hot tier without ``journal``).
    :param batch_size: records per database transaction.
    :param flush_interval: seconds a record waits at most for its batch to fill.
    :param max_pending: records accepted but not stored at most; then ``save`` waits
        up to ``save_timeout`` seconds and raises :class:`~codeexec.StoreFullError`.
    :param check: write and read back a probe in each blob tier now, so a bad path or
        an unreachable bucket fails here and not at the first save.
    :param create: False opens only a store that exists: a database holding the
        submissions table and, for a local hot tier, its directory. A mistyped path is
        then a :class:`StorageConfigError` instead of a new, empty store.
    """

    def __init__(
        self,
        db: str = "sqlite:///codeexec.db",
        hot: str = "codeexec-blobs",
        cold: str | None = None,
        *,
        hot_options: Mapping[str, Any] | None = None,
        cold_options: Mapping[str, Any] | None = None,
        compression: Compression = "zstd",
        journal: str | None = None,
        durability: Durability | None = None,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        max_pending: int = 10_000,
        save_timeout: float = 30.0,
        check: bool = True,
        partitions_ahead: int = 3,
        create: bool = True,
    ) -> None:
        if durability not in (None, "journal", "fsync", "none"):
            raise StorageConfigError(
                f"durability must be 'journal', 'fsync' or 'none', not {durability!r}"
            )
        if batch_size < 1 or max_pending < batch_size:
            raise StorageConfigError("need 1 <= batch_size <= max_pending")
        fsync = durability == "fsync"
        hot_tier = BlobTier(hot, hot_options, fsync=fsync)
        cold_tier = BlobTier(cold, cold_options) if cold is not None else None
        if journal is None and hot_tier.local and durability != "none":
            journal = os.path.join(hot_tier.root, ".journal")
        if durability in ("journal", "fsync") and journal is None:
            raise StorageConfigError(
                f"durability={durability!r} needs a journal directory (the hot tier"
                f" {hot!r} is not local)"
            )
        if not create:
            _hot_tier_exists(hot_tier)
        self.durability: Durability = durability or ("journal" if journal else "none")
        self.blobs = BlobStore(hot_tier, cold_tier, compression=compression)
        if check:
            hot_tier.check()
            if cold_tier is not None:
                cold_tier.check()
        self.meta = MetadataStore(db, partitions_ahead=partitions_ahead, fsync=fsync, create=create)
        self.save_timeout = save_timeout
        self._rejected = os.path.join(journal, "rejected") if journal else None
        self._writer = WriteBehind(
            self._store_batch,
            reject=self._reject,
            journal=Journal(journal, fsync=fsync)
            if self.durability != "none" and journal
            else None,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
        )
        self._revision_lock = threading.Lock()
        self._last_saved: LRUCache[str, dt.datetime] = LRUCache(maxsize=65536)
        self._closed = False

    @classmethod
    def at(cls, directory: str | os.PathLike[str], **options: Any) -> Store:
        """Everything local under ``directory``: ``metadata.db`` (SQLite), ``blobs/``
        (the hot tier) and ``blobs/.journal``. With ``create=False`` the store must
        exist there."""
        directory = os.path.abspath(os.fspath(directory))
        if options.get("create", True):
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise StorageConfigError(f"cannot make the store {directory}: {exc}") from exc
        return cls(
            db=f"sqlite:///{os.path.join(directory, 'metadata.db')}",
            hot=os.path.join(directory, "blobs"),
            **options,
        )

    # -------------------------------------------------------------- writes

    def save(
        self,
        submission: Submission,
        result: Result,
        *,
        id: str | None = None,
        created_at: dt.datetime | None = None,
    ) -> str:
        """Accept a submission and its result for storage; returns the record's id.

        The id is ``id``, else ``submission.metadata["submission_id"]``, else a new
        time-ordered one. It returns once the record is journaled (see the class's
        ``durability``); it is stored in the database and tiers within
        ``flush_interval`` seconds, or at :meth:`flush` / :meth:`close`.
        """
        if self._closed:
            raise StorageConfigError("the store is closed")
        if not isinstance(submission, Submission) or not isinstance(result, Result):
            raise StorageConfigError("save takes a Submission and its Result")
        ident = self.check(submission, id=id) or new_id()
        if len(result.backend) > _NAME_MAX:
            raise StorageConfigError(f"a backend name longer than {_NAME_MAX} is not stored")
        created = dt.datetime.now(UTC) if created_at is None else created_at
        if created.tzinfo is None:
            raise StorageConfigError("created_at must carry a time zone (UTC)")
        created = self._next_revision_time(ident, created.astimezone(UTC))
        entry = {
            "id": ident,
            "created_at": created.isoformat(),
            "submission": submission.to_dict(),
            "result": result.to_dict(),
        }
        self._writer.put(entry, self.save_timeout)
        return ident

    def check(self, submission: Submission, *, id: str | None = None) -> str | None:
        """What :meth:`save` checks before it accepts a submission, without saving:
        the record id it would use (``id``, else ``metadata["submission_id"]``; None
        when a new one would be made) and the lengths of what goes in columns. An
        :class:`~codeexec.Executor` with a store calls it before anything runs, so a
        bad id never costs a judged result. :class:`StorageConfigError` if not."""
        if not isinstance(submission, Submission):
            raise StorageConfigError(f"expected a Submission, got {type(submission).__name__}")
        for key in ("user_id", "problem_id"):
            value = submission.metadata.get(key)
            if value is not None and len(str(value)) > _TEXT_MAX:
                raise StorageConfigError(f"metadata[{key!r}] is longer than {_TEXT_MAX}")
        if len(submission.language) > _NAME_MAX:
            raise StorageConfigError(f"a language name longer than {_NAME_MAX} is not stored")
        ident = id if id is not None else submission.metadata.get("submission_id")
        if ident is None:
            return None
        if not isinstance(ident, str | int) or isinstance(ident, bool):
            raise StorageConfigError(f"a record id must be a string, got {ident!r}")
        ident = str(ident)
        if not _ID.fullmatch(ident):
            raise StorageConfigError(
                f"a record id must be 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -),"
                f" got {ident!r}"
            )
        return ident

    def _next_revision_time(self, ident: str, created: dt.datetime) -> dt.datetime:
        """``created``, or just after this process's last save of ``ident`` when that
        was at the same microsecond or later: each revision has its own (id,
        created_at), so a rejudge is never taken for a replay and dropped."""
        with self._revision_lock:
            last = self._last_saved.get(ident)
            if last is not None and created <= last:
                created = last + dt.timedelta(microseconds=1)
            self._last_saved[ident] = created
        return created

    def _store_batch(self, entries: Sequence[dict[str, Any]]) -> None:
        """Write a batch's blobs, then its rows (one transaction), idempotently."""
        prepared = [_prepare(e) for e in entries]

        def write_blobs() -> None:
            wanted: dict[str, bytes] = {}
            seen: set[str] = set()
            for _record, blobs in prepared:
                for key, (data, shared) in blobs.items():
                    if key in seen:
                        continue
                    seen.add(key)
                    # Content-addressed blobs already in the hot tier are not rewritten;
                    # the blob guard keeps the lifecycle from deleting them meanwhile.
                    if not (shared and self.blobs.hot.exists(key)):
                        wanted[key] = data
            self.blobs.put_many(wanted)

        self.meta.insert([record for record, _ in prepared], write_blobs)

    def _reject(self, entry: Mapping[str, Any], error: BaseException) -> None:
        """Keep a record the database refused in ``<journal>/rejected/<id>.json``, with
        the reason, for an operator to look at; nothing accepted is dropped silently."""
        if self._rejected is None:
            return  # logged by the writer; without a journal there is nowhere to keep it
        os.makedirs(self._rejected, mode=0o700, exist_ok=True)
        name = str(entry.get("id")) if _ID.fullmatch(str(entry.get("id"))) else new_id()
        with open(os.path.join(self._rejected, f"{name}.json"), "w") as f:
            json.dump({"error": repr(error), "entry": entry}, f)

    def flush(self, timeout: float | None = None) -> bool:
        """Store every record accepted so far; False if not done within ``timeout``."""
        return self._writer.flush(timeout)

    @property
    def pending(self) -> int:
        """Records accepted but not stored yet."""
        return len(self._writer)

    # -------------------------------------------------------------- reads

    def record(self, ident: str) -> Record:
        """The row of a record's newest revision (:class:`RecordNotFoundError` if there
        is none)."""
        pending = self._writer.pending(ident)
        if pending:
            return _prepare(pending[-1])[0]
        record = self.meta.get(ident)
        if record is None:
            raise RecordNotFoundError(f"no stored submission has id {ident!r}")
        return record

    def revisions(self, ident: str) -> list[Record]:
        """The rows of every revision of a record, oldest first (each save of the same
        id is one; :class:`RecordNotFoundError` if there is none)."""
        pending = self._writer.pending(ident)  # before the database: none is missed
        records = self.meta.revisions(ident)
        stored = {r.created_at for r in records}
        records += [r for r in (_prepare(e)[0] for e in pending) if r.created_at not in stored]
        if not records:
            raise RecordNotFoundError(f"no stored submission has id {ident!r}")
        return records

    def get(self, ident: str, *, revision: int | None = None) -> StoredSubmission:
        """A stored submission with its code, tests and full result, wherever its blobs
        are (hot or cold tier): the newest revision, or ``revision`` (1 is the first
        save of the id, -1 the newest)."""
        if revision is None:
            pending = self._writer.pending(ident)
            if pending:
                return _stored(_prepare(pending[-1])[0], pending[-1])
            return self._read(self.record(ident))
        if isinstance(revision, bool) or not isinstance(revision, int) or revision == 0:
            raise StorageConfigError(f"revision must be 1, 2, ... or -1, -2, ...: {revision!r}")
        records = self.revisions(ident)
        try:
            record = records[revision - 1 if revision > 0 else revision]
        except IndexError:
            raise RecordNotFoundError(
                f"record {ident!r} has {len(records)} revision(s), not {revision}"
            ) from None
        for entry in self._writer.pending(ident):
            if _prepare(entry)[0].created_at == record.created_at:
                return _stored(record, entry)
        return self._read(record)

    def _read(self, record: Record) -> StoredSubmission:
        try:
            document = json.loads(self.blobs.get(record.result_key))
            submission = document["submission"]
            submission.update(json.loads(self.blobs.get(record.code_key)))
            submission["tests"] = json.loads(self.blobs.get(record.tests_key))
        except FileNotFoundError as exc:
            raise StorageError(f"a blob of record {record.id!r} is in neither tier: {exc}") from exc
        return _stored(record, {"submission": submission, "result": document["result"]})

    def query(
        self,
        *,
        user_id: str | None = None,
        problem_id: str | None = None,
        verdict: str | None = None,
        language: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Records matching every filter given, newest first, ``limit`` per page.

        ``since``/``until`` bound ``created_at`` (``since <= t < until``; aware
        datetimes). Pass the page's ``next`` as ``cursor`` for the next page. Only
        stored records are searched: :meth:`flush` first to include the newest.
        """
        for what, text in (
            ("user_id", user_id),
            ("problem_id", problem_id),
            ("language", language),
        ):
            if text is not None and (not isinstance(text, str) or not _is_text(text)):
                raise StorageConfigError(f"{what} must be text, got {text!r:.80}")
        if verdict is not None and str(verdict) not in _VERDICTS:
            raise StorageConfigError(
                f"unknown verdict {verdict!r}; verdicts are {', '.join(sorted(_VERDICTS))}"
            )
        return self.meta.query(
            user_id=user_id,
            problem_id=problem_id,
            verdict=None if verdict is None else str(verdict),
            language=language,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    # -------------------------------------------------------------- lifecycle

    def lifecycle(
        self,
        *,
        move_after: float | dt.timedelta | None = None,
        delete_after: float | dt.timedelta | None = None,
        now: dt.datetime | None = None,
        batch: int = 500,
    ) -> LifecycleReport:
        """Move blobs of records older than ``move_after`` (days, or a timedelta) from
        the hot to the cold tier, and delete records older than ``delete_after`` with
        their blobs. Resumable and safe to run twice, or from two processes at once."""
        return run_lifecycle(
            self.meta,
            self.blobs,
            move_after=_days(move_after),
            delete_after=_days(delete_after),
            now=now or dt.datetime.now(UTC),
            batch=batch,
        )

    def close(self, timeout: float | None = 30.0) -> bool:
        """Store what is pending (up to ``timeout`` seconds), then release everything.
        False if records were left over: they are in the journal, and the next store
        opened on it stores them."""
        if self._closed:
            return True
        self._closed = True
        flushed = self._writer.close(timeout)
        self.meta.close()
        return flushed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store(db={self.meta!r}, hot={self.blobs.hot!r}, cold={self.blobs.cold!r})"


def _stored(record: Record, entry: Mapping[str, Any]) -> StoredSubmission:
    """A record and its entry (``submission`` and ``result`` dicts) as objects."""
    return StoredSubmission(
        record,
        Submission.from_dict(entry["submission"], recorded_checker=True),
        Result.from_dict(entry["result"]),
    )


def _hot_tier_exists(hot: BlobTier) -> None:
    """Refuse a local hot tier that is not there (see ``Store(create=False)``; the
    database is checked by :class:`MetadataStore`)."""
    if hot.local and not os.path.isdir(hot.root):
        raise StorageConfigError(f"no store here: the hot tier {hot.root} does not exist")


def _is_text(value: str) -> bool:
    """Encodable as UTF-8 (a lone surrogate, from a command line say, is not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _days(value: float | dt.timedelta | None) -> dt.timedelta | None:
    if value is None or isinstance(value, dt.timedelta):
        return value
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= _MAX_DAYS  # NaN fails this too
    ):
        raise StorageConfigError(
            f"an age is a number of days from 0 to {_MAX_DAYS}, or a timedelta: {value!r}"
        )
    return dt.timedelta(days=value)


#: The longest age the lifecycle takes (a thousand years: datetime's range ends soon after).
_MAX_DAYS = 365_000


def _prepare(entry: Mapping[str, Any]) -> tuple[Record, dict[str, tuple[bytes, bool]]]:
    """A journal entry as its row and its blobs (key -> (bytes, content-addressed))."""
    submission = dict(entry["submission"])
    result = entry["result"]
    created = dt.datetime.fromisoformat(entry["created_at"])
    code = _canonical({"code": submission.pop("code"), "files": submission.pop("files")})
    tests = _canonical(submission.pop("tests"))
    document = _canonical({"submission": submission, "result": result})
    code_key = _content_key("code", code)
    tests_key = _content_key("tests", tests)
    # Each revision of an id has a result blob of its own.
    result_key = f"results/{created:%Y/%m/%d}/{entry['id']}.{created:%H%M%S%f}"
    outcomes = result.get("tests", [])
    metadata = submission.get("metadata", {})
    record = Record(
        id=entry["id"],
        created_at=created,
        user_id=_text(metadata.get("user_id")),
        problem_id=_text(metadata.get("problem_id")),
        language=submission["language"],
        verdict=result["verdict"],
        fingerprint=result.get("fingerprint", ""),
        backend=result.get("backend", ""),
        cached=bool(result.get("cached", False)),
        tests_total=len(outcomes),
        tests_passed=sum(1 for t in outcomes if t["verdict"] == "accepted"),
        cpu_time=max((t["cpu_time"] for t in outcomes), default=0.0),
        wall_time=max((t["wall_time"] for t in outcomes), default=0.0),
        memory_peak=max((t["memory_peak"] for t in outcomes), default=0),
        queue_time=result.get("queue_time", 0.0),
        total_time=result.get("total_time", 0.0),
        code_key=code_key,
        code_bytes=len(code),
        tests_key=tests_key,
        tests_bytes=len(tests),
        result_key=result_key,
        result_bytes=len(document),
        tier="hot",
    )
    return record, {code_key: (code, True), tests_key: (tests, True), result_key: (document, False)}


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
