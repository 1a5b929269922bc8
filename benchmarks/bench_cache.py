"""The result cache against its baselines, measured side by side in one run.

- L1: a hit through the whole LayeredCache, against a bare cachetools lookup behind a
  lock (target: at most 2 µs absolute).
- L2: a hit through LayeredCache([RedisCache]), against a bare redis-py GET of the same
  bytes (target: at most 1.2x).
- L3: a hit through LayeredCache([SQLCache]) on SQLite, against a SQLAlchemy Core SELECT
  of the same row on a held connection (target: at most 1.2x).
- A cached 10-test C++ submission against executing it (target: at least 1000x faster).

Starts its own redis-server on loopback. Prints ratios and writes
``benchmarks/out/cache.json``.

    .venv/bin/python benchmarks/bench_cache.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cachetools import LRUCache

import codeexec
from codeexec.cache import LayeredCache, MemoryCache, from_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from services import RedisServer  # noqa: E402


def per_call(fn: Any, calls: int, rounds: int = 5) -> float:
    """Best of ``rounds`` averages over ``calls`` calls, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def alternate(a: Any, b: Any, calls: int, rounds: int = 7) -> tuple[float, float]:
    """Best-of averages of two functions, rounds interleaved (drift hits both)."""
    ta = tb = float("inf")
    for _ in range(rounds):
        ta = min(ta, per_call(a, calls, 1))
        tb = min(tb, per_call(b, calls, 1))
    return ta, tb


def l1() -> dict[str, float]:
    value = b"x" * 300
    cache = LayeredCache([MemoryCache()])
    cache.set("key", value)
    bare: LRUCache[str, bytes] = LRUCache(10_000)
    bare["key"] = value
    lock = threading.Lock()

    def baseline() -> Any:
        with lock:
            return bare.get("key")

    ours, base = alternate(lambda: cache.get("key"), baseline, 50_000)
    return {"layered_s": ours, "locked_cachetools_s": base}


def l2(server: RedisServer) -> dict[str, float]:
    tier = from_url(server.url, prefix="bench:")
    cache = LayeredCache([tier])
    cache.set("key", b"x" * 300)
    raw_key = "bench:raw"
    tier.client.set(raw_key, tier.client.get("bench:key"))  # the very same bytes
    ours, base = alternate(lambda: cache.get("key"), lambda: tier.client.get(raw_key), 2_000)
    tier.close()
    return {"layered_s": ours, "redis_get_s": base}


def l3(directory: str) -> dict[str, float]:
    url = f"sqlite:///{directory}/bench.db"
    tier = from_url(url)
    cache = LayeredCache([tier])
    cache.set("key", b"x" * 300)
    engine = sa.create_engine(url)
    table = sa.Table("codeexec_cache", sa.MetaData(), autoload_with=engine)
    statement = sa.select(table.c.value, table.c.expires_at).where(table.c.key == "key")
    conn = engine.connect()

    def baseline() -> Any:
        return conn.execute(statement).first()

    ours, base = alternate(lambda: cache.get("key"), baseline, 5_000)
    conn.close()
    tier.close()
    return {"layered_s": ours, "sqlalchemy_select_s": base}


def submission() -> dict[str, float]:
    code = r"""
#include <bits/stdc++.h>
int main() {
    long long n, s = 0;
    std::cin >> n;
    for (long long i = 1; i <= n; i++) s += i;
    std::cout << s << "\n";
}
"""
    tests = [codeexec.TestCase(str(n), str(n * (n + 1) // 2)) for n in range(1, 11)]
    sub = codeexec.Submission(language="cpp", code=code, tests=tests)
    with codeexec.Executor(cache="memory://") as ex:
        started = time.perf_counter()
        first = ex.run(sub)
        executed = time.perf_counter() - started
        assert first.ok and not first.cached
        cached = per_call(lambda: ex.run(sub), 200)
        assert ex.run(sub).cached
    return {"executed_s": executed, "cached_s": cached}


def main() -> None:
    server = RedisServer().start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            report = {"l1": l1(), "l2": l2(server), "l3": l3(directory), "cpp": submission()}
    finally:
        server.stop()
    r1, r2, r3, cpp = report["l1"], report["l2"], report["l3"], report["cpp"]
    ratios = {
        "l1_vs_locked_cachetools": r1["layered_s"] / r1["locked_cachetools_s"],
        "l2_vs_redis_get": r2["layered_s"] / r2["redis_get_s"],
        "l3_vs_sqlalchemy_select": r3["layered_s"] / r3["sqlalchemy_select_s"],
        "cpp_executed_vs_cached": cpp["executed_s"] / cpp["cached_s"],
    }
    report["ratios"] = ratios
    print(
        f"L1 hit: {r1['layered_s'] * 1e6:.2f} us through LayeredCache, "
        f"{r1['locked_cachetools_s'] * 1e6:.2f} us bare: "
        f"{ratios['l1_vs_locked_cachetools']:.2f}x   [target <= 2 us]"
    )
    print(
        f"L2 hit: {r2['layered_s'] * 1e6:.1f} us, redis-py GET {r2['redis_get_s'] * 1e6:.1f} us: "
        f"{ratios['l2_vs_redis_get']:.3f}x   [target <= 1.2x]"
    )
    print(
        f"L3 hit: {r3['layered_s'] * 1e6:.1f} us, SQLAlchemy SELECT "
        f"{r3['sqlalchemy_select_s'] * 1e6:.1f} us: {ratios['l3_vs_sqlalchemy_select']:.3f}x"
        "   [target <= 1.2x]"
    )
    print(
        f"10-test C++: executed {cpp['executed_s'] * 1e3:.1f} ms, cached "
        f"{cpp['cached_s'] * 1e6:.1f} us: {ratios['cpp_executed_vs_cached']:.0f}x faster"
        "   [target >= 1000x]"
    )
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "cache.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
