"""Every cache tier against the same behaviour, on real Redis and PostgreSQL."""

import secrets
import time

import pytest

import codeexec
from codeexec.cache import MISS, MemoryCache, from_url


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def tier(request, tmp_path):
    kind = request.param
    if kind == "memory":
        cache = MemoryCache(maxsize=1000)
    elif kind == "sqlite":
        cache = from_url(f"sqlite:///{tmp_path}/cache.db")
    elif kind == "redis":
        server = request.getfixturevalue("redis_server")
        cache = from_url(server.url, prefix=f"t{secrets.token_hex(4)}:")
    else:
        server = request.getfixturevalue("postgres_server")
        cache = from_url(server.url, table=f"cache_{secrets.token_hex(4)}")
    yield cache
    cache.close()


def test_miss_is_a_sentinel_and_empty_is_a_value(tier):
    assert tier.get("absent") is MISS
    assert not MISS
    tier.set("empty", b"")
    assert tier.get("empty") == b""


def test_round_trip_small_large_and_binary(tier):
    small, large = b"\x00\xffok", bytes(range(256)) * 200
    tier.set("small", small)
    tier.set("large", large)
    assert tier.get("small") == small
    assert tier.get("large") == large
    tier.set("small", b"replaced")
    assert tier.get("small") == b"replaced"


def test_many_and_delete(tier):
    tier.set_many({"a": b"1", "b": b"2"})
    assert tier.get_many(["a", "b", "c"]) == {"a": b"1", "b": b"2"}
    assert tier.get_many([]) == {}
    tier.delete("a")
    tier.delete("never-there")
    assert tier.get("a") is MISS
    assert tier.get("b") == b"2"


def test_expiry(tier):
    tier.set("short", b"x", ttl=0.3)
    tier.set("long", b"y", ttl=60)
    assert tier.get("short") == b"x"
    time.sleep(0.6)
    assert tier.get("short") is MISS
    assert tier.get("long") == b"y"


def test_sql_purge_removes_only_expired_rows(tmp_path):
    cache = from_url(f"sqlite:///{tmp_path}/purge.db")
    cache.set("old", b"1", ttl=0.01)
    cache.set("new", b"2", ttl=60)
    time.sleep(0.05)
    assert cache.purge() == 1
    assert cache.purge() == 0
    assert cache.get("new") == b"2"
    cache.close()


def test_redis_compresses_and_rejects_garbage(redis_server):
    cache = from_url(redis_server.url, prefix="garbage:", compress_above=100)
    cache.set("big", b"a" * 10_000)
    assert len(cache.client.get("garbage:big")) < 1000
    cache.client.set("garbage:bad", b"Xnot ours")
    with pytest.raises(codeexec.CacheError):
        cache.get("bad")
    cache.close()


def test_unknown_url_scheme():
    with pytest.raises(codeexec.CacheError, match="memory://"):
        from_url("ftp://example/cache")


def test_memory_cache_is_bounded():
    cache = MemoryCache(maxsize=3)
    for i in range(10):
        cache.set(str(i), b"v")
    assert len(cache) == 3
    assert cache.get("9") == b"v" and cache.get("0") is MISS


def test_the_redis_lock_excludes_renews_and_expires(redis_server):
    cache = from_url(redis_server.url, prefix=f"lock{secrets.token_hex(4)}:")
    first, second = cache.lock("k", ttl=0.4), cache.lock("k", ttl=0.4)
    assert first.acquire()
    assert not second.acquire()
    time.sleep(1.0)  # more than the ttl: the holder's thread renews it
    assert not second.acquire()
    first.release()
    assert second.acquire()
    # A holder that dies (its renewing thread with it) loses the lock after the ttl.
    second._stop.set()
    second._keeper.join()
    time.sleep(0.6)
    third = cache.lock("k", ttl=0.4)
    assert third.acquire()
    second.release()  # no longer its lock: releasing it must not free the new holder's
    assert not cache.lock("k", ttl=0.4).acquire()
    third.release()
    cache.close()
