"""A sandbox (process by default, nsjail or docker) against its floor, side by side in
one run.

The floor is what a program costs with no sandbox at all: a bare
``subprocess.run([python3, "-B", "-E", "-s", "-c", "print(1)"])`` from the same process
(the flags the python language runs with). Samples alternate between floor and sandbox
so drift on a shared machine hits both alike: latency compares medians, throughput
compares batches run in alternating rounds. Prints ratios (targets from the core issue
in brackets) and writes the numbers to ``benchmarks/out/<backend>.json``.

    .venv/bin/python benchmarks/bench_process.py [--backend nsjail|docker] [--runs 60]
        [--batch 400]

For docker the sandbox is the warm pool (one container per slot, started before the
samples); the floor is the same bare run on the host.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import codeexec
from codeexec.backends import RunRequest, get_sandbox

PROGRAM = ("-B", "-E", "-s", "-c", "print(1)")
#: The issues' targets (the hardening issue's for latency): latency at most, throughput and
#: scaling at least.
TARGETS = {
    "process": {"latency": 1.10, "throughput": 0.9, "scaling": 1.8},
    "nsjail": {"latency": 1.15, "throughput": 0.8, "scaling": 1.8},
    "docker": {"latency": 1.3, "throughput": 0.5, "scaling": 1.8},
}


def python3() -> str:
    registry = codeexec.LanguageRegistry(codeexec.default_languages())
    return registry.toolchain("python").tools["python3"]


def latency(runs: int, python: str, backend: str) -> dict[str, float]:
    argv = [python, *PROGRAM]
    request = RunRequest(argv=argv, env={"PATH": "/usr/bin:/bin"}, language="python")
    samples: dict[str, list[float]] = {"floor": [], "sandbox": [], "executor": []}
    submission = codeexec.Submission(language="python", code="print(1)")
    sandbox = get_sandbox(backend, slots=1)
    with sandbox, codeexec.Executor(sandbox) as executor:
        sandbox.warm()
        executor.run(submission)  # toolchain detection happens once, not in a sample

        def floor() -> None:
            subprocess.run(argv, capture_output=True, check=True)

        def sandboxed() -> None:
            assert sandbox.run(request).exit_code == 0

        def executed() -> None:
            assert executor.run(submission).ok

        contenders = [("floor", floor), ("sandbox", sandboxed), ("executor", executed)]
        if backend == "docker":
            contenders.append(("docker exec", docker_exec(sandbox, argv)))
            samples["docker exec"] = []
        for _, fn in contenders:  # warm caches
            fn()
        for _ in range(runs):
            for name, fn in contenders:
                started = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def docker_exec(sandbox: object, argv: list[str]) -> Callable[[], None]:
    """The baseline a warm pool replaces: ``docker exec`` of the program in one of the
    pool's own warm containers (whichever is idle: they rotate), as its user."""
    import docker

    client = docker.from_env()
    known: dict[str, object] = {}  # inspected once, not in every sample

    def run() -> None:
        pools = sandbox.pools()  # type: ignore[attr-defined]
        cid = next(c for p in pools for c in p["idle"])
        if cid not in known:
            known[cid] = client.containers.get(cid)
        container: Any = known[cid]
        user = container.attrs["Config"]["User"]
        code, _ = container.exec_run(argv, user=user, environment={"PATH": "/usr/bin:/bin"})
        assert code == 0

    return run


def throughput(
    batch: int, workers: int, python: str, backend: str, rounds: int = 4
) -> dict[str, float]:
    argv = [python, *PROGRAM]
    per_round = batch // rounds
    subs = [codeexec.Submission(language="python", code="print(1)")] * per_round

    def floor_once(_: int) -> None:
        subprocess.run(argv, capture_output=True, check=True)

    elapsed = {"floor": 0.0, "single": 0.0, "multi": 0.0}
    with (
        concurrent.futures.ThreadPoolExecutor(workers) as pool,
        get_sandbox(backend, slots=1) as one,
        get_sandbox(backend, slots=workers) as many,
        codeexec.Executor(one) as single,
        codeexec.Executor(many) as multi,
    ):
        one.warm()
        many.warm()
        single.run_many(subs[:4])
        multi.run_many(subs[:8])
        list(pool.map(floor_once, range(8)))
        for _ in range(rounds):
            started = time.perf_counter()
            list(pool.map(floor_once, range(per_round)))
            elapsed["floor"] += time.perf_counter() - started
            for name, executor in (("multi", multi), ("single", single)):
                started = time.perf_counter()
                results = executor.run_many(subs)
                elapsed[name] += time.perf_counter() - started
                assert all(r.ok for r in results)
    return {name: per_round * rounds / seconds for name, seconds in elapsed.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="process", help="process, nsjail or docker")
    args = parser.parse_args()
    python = python3()
    lat = latency(args.runs, python, args.backend)
    thr = throughput(args.batch, args.workers, python, args.backend)
    report = {
        "latency_seconds": lat,
        "throughput_per_second": thr,
        "ratios": {
            "sandbox_latency_vs_floor": lat["sandbox"] / lat["floor"],
            "executor_latency_vs_floor": lat["executor"] / lat["floor"],
            "run_many_throughput_vs_floor": thr["multi"] / thr["floor"],
            "run_many_scaling_vs_single": thr["multi"] / thr["single"],
        },
    }
    ms = {k: f"{v * 1000:.2f} ms" for k, v in lat.items()}
    print(f"{args.backend}: latency of print(1), medians of {args.runs}: {ms}")
    r = report["ratios"]
    target = TARGETS.get(args.backend, TARGETS["process"])
    print(
        f"  sandbox.run  / floor = {r['sandbox_latency_vs_floor']:.3f}x"
        f"   [target <= {target['latency']}x]"
    )
    print(f"  executor.run / floor = {r['executor_latency_vs_floor']:.3f}x")
    if "docker exec" in lat:
        r["docker_exec_latency_vs_floor"] = lat["docker exec"] / lat["floor"]
        print(f"  docker exec  / floor = {r['docker_exec_latency_vs_floor']:.3f}x   (baseline)")
    print(
        f"throughput of {args.batch} runs: floor {thr['floor']:.1f}/s with {args.workers} threads,"
        f" run_many {thr['multi']:.1f}/s with {args.workers} slots, {thr['single']:.1f}/s with 1"
    )
    print(
        f"  run_many / floor     = {r['run_many_throughput_vs_floor']:.3f}x"
        f"   [target >= {target['throughput']}x]"
    )
    print(
        f"  run_many 2 / 1 slot  = {r['run_many_scaling_vs_single']:.3f}x"
        f"   [target >= {target['scaling']}x]"
    )
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"{args.backend}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
