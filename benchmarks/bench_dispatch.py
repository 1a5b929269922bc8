"""Dispatchers against their baselines, measured side by side in one run.

- The local pool (``Executor.submit`` of every job, then waiting for all) against
  ``Executor.run_many`` of the same jobs on the same sandbox (target: at least 0.95x
  its throughput).
- Celery with 2 local ``codeexec worker`` processes (one sandbox slot each) against
  the local pool with 2 slots (target: at least 0.7x its throughput).

Jobs are trivial (``echo`` in bash, each different, so nothing is cached): what is
measured is the dispatch path. Starts its own redis-server. Prints ratios and writes
``benchmarks/out/dispatch.json``.

    .venv/bin/python benchmarks/bench_dispatch.py [--jobs 1000] [--rounds 5] [--pool solo]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import codeexec  # noqa: E402
from codeexec.dispatch import CeleryDispatcher  # noqa: E402
from services import CeleryWorker, RedisServer  # noqa: E402

_serial = itertools.count()
SHOW_CPU = False


def jobs(n: int) -> list[codeexec.Submission]:
    base = next(_serial) * n
    return [
        codeexec.Submission(
            language="bash",
            code=f"echo {base + i}",
            tests=[codeexec.TestCase(expected=f"{base + i}\n")],
        )
        for i in range(n)
    ]


def through_run_many(ex: codeexec.Executor, n: int) -> float:
    batch = jobs(n)
    started = time.perf_counter()
    results = ex.run_many(batch)
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results)
    return n / elapsed


def cpu_busy() -> float:
    """Seconds of CPU the whole machine has spent busy so far (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def through_submit(ex: codeexec.Executor, n: int) -> float:
    batch = jobs(n)
    busy = cpu_busy()
    started = time.perf_counter()
    submitted = [ex.submit(s) for s in batch]
    results = [j.result(timeout=600) for j in submitted]
    elapsed = time.perf_counter() - started
    bad = [(r.verdict, r.tests[0].message if r.tests else "") for r in results if not r.ok]
    assert not bad, bad[:5]
    if SHOW_CPU:
        print(
            f"  {ex.dispatcher.name}: {(cpu_busy() - busy) / n * 1e3:.2f} ms CPU per job,"
            f" {(cpu_busy() - busy) / elapsed:.2f} cores busy"
        )
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pool", default="solo", help="the workers' pool: solo or prefork")
    parser.add_argument("--cpu", action="store_true", help="print CPU time per job")
    args = parser.parse_args()
    global SHOW_CPU
    SHOW_CPU = args.cpu
    n = args.jobs

    redis = RedisServer().start()
    workers = [
        CeleryWorker(redis.url, f"bench{i}", uid_base=63000 + 100 * i, pool=args.pool)
        for i in range(2)
    ]
    try:
        for worker in workers:
            worker.start()
        sandbox = codeexec.get_sandbox("process", slots=2)
        best = {"run_many": 0.0, "local": 0.0, "celery": 0.0}
        with (
            codeexec.Executor(sandbox) as local,
            codeexec.Executor(sandbox, dispatcher=CeleryDispatcher(broker=redis.url)) as remote,
        ):
            through_run_many(local, 50)  # warm: slot servers, toolchain detection
            through_submit(remote, 50)  # warm: worker pools and their sandboxes
            for _ in range(args.rounds):  # interleaved: drift hits all three
                best["run_many"] = max(best["run_many"], through_run_many(local, n))
                best["local"] = max(best["local"], through_submit(local, n))
                best["celery"] = max(best["celery"], through_submit(remote, n))
        sandbox.close()
    finally:
        for worker in workers:
            worker.stop()
        redis.stop()

    local_ratio = best["local"] / best["run_many"]
    celery_ratio = best["celery"] / best["local"]
    print(f"run_many:        {best['run_many']:7.1f} jobs/s")
    print(f"local pool:      {best['local']:7.1f} jobs/s: {local_ratio:.2f}x run_many (>= 0.95)")
    print(f"celery, 2 local: {best['celery']:7.1f} jobs/s: {celery_ratio:.2f}x local (>= 0.7)")
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "dispatch.json").write_text(
        json.dumps(
            {"jobs": n, **best, "local_vs_run_many": local_ratio, "celery_vs_local": celery_ratio},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
