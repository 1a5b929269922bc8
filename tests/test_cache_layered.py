"""LayeredCache: promotion, write-through, jitter, breakers, versions, stale serving."""

import logging
import secrets
import time

from codeexec.cache import MISS, LayeredCache, MemoryCache, from_url
from services import RedisServer, free_port


def redis_tier(server, prefix=None):
    return from_url(server.url, prefix=prefix or f"l{secrets.token_hex(4)}:", socket_timeout=0.3)


def test_read_through_promotes_to_faster_tiers(redis_server):
    l1, l2 = MemoryCache(), redis_tier(redis_server)
    cache = LayeredCache([l1, l2])
    other = LayeredCache([MemoryCache(), l2])  # another process's view of L2
    other.set("k", b"value")
    assert l1.get("k") is MISS
    entry = cache.get_entry("k")
    assert entry.value == b"value" and entry.tier == "redis" and not entry.stale
    assert cache.get_entry("k").tier == "memory"


def test_write_through_with_jittered_expiry(redis_server):
    l1, l2 = MemoryCache(), redis_tier(redis_server)
    cache = LayeredCache([l1, l2], result_ttl=1000, jitter=0.1)
    for i in range(40):
        cache.set(f"k{i}", b"v")
    assert all(l1.get(f"k{i}") is not MISS for i in range(40))
    ttls = [l2.client.pttl(l2.prefix + f"k{i}") for i in range(40)]
    assert all(900_000 <= t <= 1_100_000 for t in ttls), ttls
    assert len(set(ttls)) > 30, "keys written together must not expire together"


def test_a_dead_tier_is_skipped_with_a_warning(caplog):
    dead = from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    cache = LayeredCache([MemoryCache(), dead], cooldown=60)
    with caplog.at_level(logging.WARNING, logger="codeexec.cache.layered"):
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
        assert cache.get("other") is MISS
    assert any("redis" in r.getMessage() for r in caplog.records)
    assert cache.breakers[1].is_open
    started = time.monotonic()
    cache.get("again")  # open breaker: no second timeout
    assert time.monotonic() - started < 0.1


def test_redis_killed_and_restarted_mid_use():
    server = RedisServer().start()
    try:
        l2 = redis_tier(server, prefix="restart:")
        cache = LayeredCache([MemoryCache(), l2], cooldown=0.2)
        cache.set("before", b"1")
        server.kill()
        cache.set("during", b"2")  # Redis is gone: L1 still takes it
        assert cache.get("during") == b"2"
        assert cache.get("before") == b"1"
        server.start()
        time.sleep(0.3)  # past the cool-down: the tier is tried again
        cache.set("after", b"3")
        assert LayeredCache([l2]).get("after") == b"3"  # it reached Redis
        assert not cache.breakers[1].is_open
    finally:
        server.stop()


def test_garbage_in_a_tier_is_a_miss_not_an_error(redis_server):
    l2 = redis_tier(redis_server)
    cache = LayeredCache([l2])
    l2.client.set(l2.prefix + "k", b"r\x01")  # framed, but no freshness stamp
    assert cache.get("k") is MISS


def test_invalidate_bumps_a_version_every_process_sees(redis_server):
    shared = redis_tier(redis_server)
    a = LayeredCache([MemoryCache(), shared])
    b = LayeredCache([MemoryCache(), shared])
    assert a.version("p1") == 0 and b.version("p1") == 0
    assert a.invalidate("p1") == 1
    assert b.version("p1") == 1  # not hidden by b's own L1
    assert b.invalidate("p1") == 2 and a.version("p1") == 2
    assert a.version("p2") == 0


def test_stale_entries_are_served_marked_stale():
    cache = LayeredCache([MemoryCache()], result_ttl=0.2, jitter=0, stale_ttl=5)
    cache.set("k", b"v")
    assert cache.get_entry("k").stale is False
    time.sleep(0.3)
    entry = cache.get_entry("k")
    assert entry.value == b"v" and entry.stale
    assert cache.get("k") is MISS  # plain get never returns stale values


def test_a_slow_tier_times_out_and_is_skipped():
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept_and_never_answer():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_and_never_answer, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        slow = from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.2)
        cache = LayeredCache([MemoryCache(), slow], cooldown=60)
        started = time.monotonic()
        cache.set("k", b"v")
        assert cache.get("k") == b"v"
        assert cache.get("missing") is MISS
        assert time.monotonic() - started < 2
        assert cache.breakers[1].is_open
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_database_down_at_start_is_skipped_not_fatal():
    dead = from_url(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    cache = LayeredCache([MemoryCache(), dead], cooldown=60)
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    assert cache.breakers[1].is_open
