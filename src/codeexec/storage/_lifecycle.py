"""The lifecycle: hot → cold after ``move_after``, gone after ``delete_after``.

Both steps walk the records due, oldest first, ``batch`` at a time, and each step is
idempotent, so a run that is interrupted (or two runs at once) leaves nothing half
done that the next run does not finish:

- **move**: each blob is copied to the cold tier, the copy checked, and only then
  removed from the hot tier (:meth:`BlobStore.move_to_cold`); then the batch's rows are
  marked ``cold``. A blob found only in the cold tier is counted as moved already.
- **delete**: the batch's result blobs go first, then, in one transaction under the
  exclusive blob guard, the rows, and the content-addressed blobs (code, tests) that no
  remaining row references. A content-addressed blob another record still uses is kept.

Records are deleted before they are moved, so a record past both ages is never copied
to the cold tier only to be deleted.
"""

from __future__ import annotations

import datetime as dt
import logging

import attrs

from .._errors import StorageConfigError
from ._blobs import BlobStore
from ._metadata import MetadataStore

log = logging.getLogger(__name__)

__all__ = ["LifecycleReport", "run_lifecycle"]


@attrs.frozen
class LifecycleReport:
    """What one lifecycle run did: records and blobs moved or deleted, and the keys of
    blobs that were in neither tier (lost before this run; their records are marked
    moved anyway, so the run does not stall on them)."""

    records_moved: int = 0
    blobs_moved: int = 0
    records_deleted: int = 0
    blobs_deleted: int = 0
    missing: tuple[str, ...] = ()


def run_lifecycle(
    meta: MetadataStore,
    blobs: BlobStore,
    *,
    move_after: dt.timedelta | None,
    delete_after: dt.timedelta | None,
    now: dt.datetime,
    batch: int = 500,
) -> LifecycleReport:
    if move_after is not None and blobs.cold is None:
        raise StorageConfigError("move_after needs a cold tier (Store(cold=...))")
    if move_after is not None and delete_after is not None and delete_after < move_after:
        raise StorageConfigError("delete_after must not be shorter than move_after")
    if batch < 1:
        raise StorageConfigError("batch must be at least 1")
    records_deleted = blobs_deleted = records_moved = blobs_moved = 0
    missing: list[str] = []

    if delete_after is not None:
        cutoff = now - delete_after
        while records := meta.oldest(cutoff, batch):
            for record in records:
                blobs.delete(record.result_key)
            blobs_deleted += len(records)
            shared = {r.code_key for r in records} | {r.tests_key for r in records}
            with meta.transaction() as conn, meta.blob_guard(conn, exclusive=True):
                meta.delete(conn, records)
                for key in meta.unreferenced(conn, shared):
                    blobs.delete(key)
                    blobs_deleted += 1
            records_deleted += len(records)
            log.info("lifecycle: deleted %d records older than %s", len(records), cutoff)

    if move_after is not None:
        cutoff = now - move_after
        while records := meta.oldest(cutoff, batch, tier="hot"):
            for record in records:
                for key in (record.code_key, record.tests_key, record.result_key):
                    try:
                        blobs_moved += blobs.move_to_cold(key)
                    except FileNotFoundError:
                        log.error("lifecycle: blob %s of record %s is lost", key, record.id)
                        missing.append(key)
            meta.set_tier(records, "cold")
            records_moved += len(records)
            log.info("lifecycle: moved %d records older than %s", len(records), cutoff)

    return LifecycleReport(
        records_moved=records_moved,
        blobs_moved=blobs_moved,
        records_deleted=records_deleted,
        blobs_deleted=blobs_deleted,
        missing=tuple(missing),
    )
