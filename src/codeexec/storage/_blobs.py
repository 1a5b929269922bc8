"""Blob tiers on fsspec: a hot tier (local directory or ``memory://``) and an optional
cold tier (any fsspec URL; ``s3://`` through s3fs), with compression.

A blob is written whole or not at all: on a local file system it goes to a temporary
name in the same directory and is renamed into place; object stores (S3) make a PUT
visible only when it is complete. Compressed blobs carry their codec's magic number,
so a reader needs no side information and a store may change codec over its life.
A read looks in the hot tier, then in the cold one, so it finds a blob wherever the
lifecycle has put it, even while it is being moved.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import gzip
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any, Literal

try:
    import fsspec
    from fsspec.implementations.local import LocalFileSystem
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("blob storage needs fsspec: pip install 'codeexec[storage]'") from exc

from .._errors import StorageConfigError, StorageError, StorageUnavailableError

try:
    import zstandard
except ImportError:  # pragma: no cover - zstandard comes with codeexec[storage]
    zstandard = None  # type: ignore[assignment]

__all__ = ["BlobStore", "BlobTier", "compress", "decompress"]

Compression = Literal["zstd", "gzip", "none"]

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_WRITERS = 8  # concurrent writes of one batch
_GZIP_MAGIC = b"\x1f\x8b"


_local = threading.local()  # zstd contexts are not thread-safe, and costly to make


def _zstd(kind: str) -> Any:
    context = getattr(_local, kind, None)
    if context is None:
        if zstandard is None:
            raise StorageConfigError("zstd compression needs zstandard: pip install zstandard")
        context = zstandard.ZstdCompressor(level=3) if kind == "c" else zstandard.ZstdDecompressor()
        setattr(_local, kind, context)
    return context


def compress(data: bytes, codec: Compression) -> bytes:
    """``data`` compressed with ``codec`` (``"none"`` returns it as it is)."""
    if codec == "zstd":
        return bytes(_zstd("c").compress(data))
    if codec == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    return data


def decompress(data: bytes) -> bytes:
    """The original bytes of a blob, whatever codec (if any) it was written with."""
    if data.startswith(_ZSTD_MAGIC):
        if zstandard is None:
            raise StorageError("a blob is zstd-compressed and zstandard is not installed")
        return bytes(_zstd("d").decompress(data))
    if data.startswith(_GZIP_MAGIC):
        return gzip.decompress(data)
    return data  # stored uncompressed (JSON never starts with either magic number)


class BlobTier:
    """One fsspec location: a URL such as ``/var/lib/codeexec/blobs``, ``memory://x`` or
    ``s3://bucket/prefix``, with its storage options (s3fs: ``key``, ``secret``,
    ``client_kwargs={"endpoint_url": ...}``)."""

    def __init__(
        self, url: str, storage_options: Mapping[str, Any] | None = None, *, fsync: bool = False
    ) -> None:
        self.url = str(url)
        try:
            self.fs, root = fsspec.core.url_to_fs(self.url, **dict(storage_options or {}))
        except (ValueError, ImportError, TypeError) as exc:
            # fsspec says "Protocol not known" for an unknown scheme, and ImportError
            # when the scheme's package (s3fs, gcsfs, ...) is not installed.
            raise StorageConfigError(f"cannot use blob URL {self.url!r}: {exc}") from exc
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)
        self.fsync = fsync

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    def check(self) -> None:
        """Fail now, with the reason, if the tier cannot be written and read back."""
        key = f".codeexec-probe-{uuid.uuid4().hex}"
        try:
            self.put(key, b"probe")
            if self.get(key) != b"probe":
                raise StorageUnavailableError(f"{self.url}: a probe read back different bytes")
        except FileNotFoundError as exc:
            raise StorageUnavailableError(f"{self.url}: a probe written was not found") from exc
        finally:
            with contextlib.suppress(StorageError):
                self.delete(key)

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key``, whole or not at all."""
        path = self.path(key)
        try:
            if self.local:
                self._put_local(path, data)
            else:
                self.fs.pipe_file(path, data)
        except Exception as exc:
            raise _unavailable(self.url, "write", key, exc) from exc

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Write many blobs at once: concurrently (threads on a local disk, where each
        new file costs a journal commit; one asynchronous batch on an object store)."""
        if len(items) <= 1 or not self.local and not hasattr(self.fs, "_pipe_file"):
            for key, data in items.items():
                self.put(key, data)
            return
        if self.local:
            with concurrent.futures.ThreadPoolExecutor(_WRITERS) as pool:
                for done in [pool.submit(self.put, k, v) for k, v in items.items()]:
                    done.result()
            return
        try:
            self.fs.pipe({self.path(k): v for k, v in items.items()})
        except Exception as exc:
            raise _unavailable(self.url, "write", f"{len(items)} blobs", exc) from exc

    def _put_local(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        # Owner-only: stored code and tests are other users' work.
        os.makedirs(directory, mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; FileNotFoundError if there are none."""
        try:
            if self.local:
                with open(self.path(key), "rb") as f:
                    return f.read()
            return bytes(self.fs.cat_file(self.path(key)))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise _unavailable(self.url, "read", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            if self.local:
                return os.path.exists(self.path(key))
            return bool(self.fs.exists(self.path(key)))
        except Exception as exc:
            raise _unavailable(self.url, "look up", key, exc) from exc

    def size(self, key: str) -> int:
        try:
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise _unavailable(self.url, "stat", key, exc) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is not an error."""
        try:
            if self.local:
                os.unlink(self.path(key))
            else:
                self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise _unavailable(self.url, "delete", key, exc) from exc

    def __repr__(self) -> str:
        return f"BlobTier({self.url!r})"


def _unavailable(url: str, action: str, key: str, exc: BaseException) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        why = "no space left on device"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return StorageUnavailableError(f"cannot {action} {key!r} in {url}: {why}")


class BlobStore:
    """Blobs in a hot tier and an optional cold tier, compressed with ``compression``.

    New blobs go to the hot tier; :meth:`move_to_cold` is the lifecycle's one step.
    """

    def __init__(
        self, hot: BlobTier, cold: BlobTier | None = None, *, compression: Compression = "zstd"
    ) -> None:
        if compression not in ("zstd", "gzip", "none"):
            raise StorageConfigError(
                f"compression must be 'zstd', 'gzip' or 'none', not {compression!r}"
            )
        if compression == "zstd" and zstandard is None:
            raise StorageConfigError("zstd compression needs zstandard: pip install zstandard")
        self.hot = hot
        self.cold = cold
        self.compression: Compression = compression

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Compress and write many blobs to the hot tier, concurrently."""
        self.hot.put_many({k: compress(v, self.compression) for k, v in items.items()})

    def get(self, key: str) -> bytes:
        """The original bytes of ``key``, from whichever tier holds it."""
        try:
            return decompress(self.hot.get(key))
        except FileNotFoundError:
            if self.cold is None:
                raise
        return decompress(self.cold.get(key))

    def locate(self, key: str) -> str | None:
        """``"hot"``, ``"cold"`` or None: where ``key`` is now."""
        if self.hot.exists(key):
            return "hot"
        if self.cold is not None and self.cold.exists(key):
            return "cold"
        return None

    def move_to_cold(self, key: str) -> bool:
        """Copy ``key`` to the cold tier, check the copy, then remove the hot one.

        Safe to repeat and to interrupt: a blob is removed from the hot tier only after
        its cold copy has been read back with the same size, and a blob already gone
        from the hot tier is taken to be moved if the cold tier has it. Returns True if
        this call moved it. A blob in neither tier raises FileNotFoundError.
        """
        if self.cold is None:
            raise StorageConfigError("this store has no cold tier to move blobs to")
        try:
            data = self.hot.get(key)
        except FileNotFoundError:
            if self.cold.exists(key):
                return False
            raise
        self.cold.put(key, data)
        if self.cold.size(key) != len(data):
            raise StorageUnavailableError(f"the cold copy of {key!r} in {self.cold.url} differs")
        self.hot.delete(key)
        return True

    def delete(self, key: str) -> None:
        """Remove ``key`` from both tiers."""
        self.hot.delete(key)
        if self.cold is not None:
            self.cold.delete(key)
