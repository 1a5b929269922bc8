"""L2: Redis (redis-py), shared by every process and machine of a deployment.

Values are framed by :func:`~codeexec.cache._base.encode` (zlib above a size), keys
carry a namespace prefix, and expiry is Redis's own. :class:`RedisLock` is the
cross-process half of single-flight: a lock that expires if its holder dies.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

try:
    import redis
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("RedisCache needs redis-py: pip install 'codeexec[redis]'") from exc

from ._base import MISS, _Miss, decode, encode

__all__ = ["RedisCache", "RedisLock"]


class RedisCache:
    """A Redis tier.

    :param url: ``redis://host:port/db`` (or pass ``client``).
    :param prefix: namespace for every key this cache writes.
    :param ttl: default seconds an entry lives.
    :param compress_above: values larger than this many bytes are zlib-compressed.
    :param socket_timeout: seconds before a slow Redis counts as failed.
    """

    name = "redis"

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        prefix: str = "codeexec:",
        ttl: float = 3600.0,
        compress_above: int | None = 1024,
        socket_timeout: float = 1.0,
    ) -> None:
        self.url = url
        self.client = client or redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self.prefix = prefix
        self.ttl = ttl
        self.compress_above = compress_above

    def _key(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str) -> bytes | _Miss:
        data = self.client.get(self.prefix + key)
        return MISS if data is None else decode(data)  # type: ignore[arg-type]

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(keys)
        if not keys:
            return {}
        values = self.client.mget([self._key(k) for k in keys])
        return {k: decode(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        seconds = self.ttl if ttl is None else ttl
        self.client.set(
            self._key(key), encode(value, self.compress_above), px=max(1, int(seconds * 1000))
        )

    def set_many(self, items: Mapping[str, bytes], ttl: float | None = None) -> None:
        seconds = self.ttl if ttl is None else ttl
        pipe = self.client.pipeline(transaction=False)
        for key, value in items.items():
            pipe.set(self._key(key), encode(value, self.compress_above), px=int(seconds * 1000))
        pipe.execute()

    def delete(self, key: str) -> None:
        self.client.delete(self._key(key))

    def lock(self, key: str, ttl: float = 30.0) -> RedisLock:
        """A lock on ``key`` in this cache's namespace."""
        return RedisLock(self.client, self._key("lock:" + key), ttl)

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, prefix={self.prefix!r})"


class RedisLock:
    """A lock held by one process at a time, across machines: redis-py's own
    :class:`redis.lock.Lock` (a token set with ``NX PX``, released and extended by
    Lua scripts that check the token), plus what it lacks for a judge: a thread that
    renews the lease every ``ttl / 3`` while it is held, so a run longer than ``ttl``
    keeps it, and if the holder dies the lock expires ``ttl`` seconds later.
    """

    def __init__(self, client: Any, key: str, ttl: float = 30.0) -> None:
        self.key = key
        self.ttl = max(0.1, ttl)
        # Not thread-local: the renewing thread acts for the thread that acquired.
        self._lock = client.lock(key, timeout=self.ttl, blocking=False, thread_local=False)
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> bool:
        """Take the lock if free; True if we hold it now."""
        if not self._lock.acquire(blocking=False):
            return False
        self._stop.clear()
        self._keeper = threading.Thread(target=self._keep, daemon=True, name="codeexec-lock")
        self._keeper.start()
        return True

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lock.reacquire()  # back to a full ttl
            except redis.exceptions.LockNotOwnedError:
                return  # lost it (expired while Redis was away)
            except redis.RedisError:
                continue

    def release(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=1)
        # Not ours any more (expired), or Redis is away: it expires on its own.
        with contextlib.suppress(redis.RedisError):
            self._lock.release()
