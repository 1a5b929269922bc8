"""Judging a 50-test problem with a C++ checker program against the same problem with
the built-in token checker, side by side in one run (the contest-judging issue's
target: at most 1.3x).

The submissions are a C++ and a Python program (what contest problems are judged with
most), the checker a testlib-style C++ program compiled once. Rounds alternate between
the kinds so drift on a shared machine hits all alike; the ratio compares medians of
whole submissions. The result cache is off: every sample judges. Writes the numbers to
``benchmarks/out/judging.json``.

A checker program is one more sandboxed process per test: where the submission itself
is a process that starts in about a millisecond (C++), that start is most of the cost
and the ratio approaches 2; behind a Python program it is a small part.

    .venv/bin/python benchmarks/bench_judging.py [--backend nsjail|docker] [--rounds 7]
        [--tests 50]

Then one submission's tests on idle slots: a 200-test Python submission on one slot
(one test after another, as before) against two slots (the issue's target: at most
0.6x), and a failing one with ``stop_on_failure`` on two slots, failing at test 20, 100
and 180: its time should follow where it fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import codeexec
from codeexec import CheckerProgram, File, Submission, TestCase

TARGET = 1.3
HERE = Path(__file__).resolve().parent
TESTLIB = File("testlib.h", (HERE.parent / "tests" / "data" / "testlib_mini.h").read_bytes())

PROGRAMS = {
    "cpp": r"""
#include <cstdio>
int main() { long long n, x, s = 0; scanf("%lld", &n);
             for (long long i = 0; i < n; i++) { scanf("%lld", &x); s += x; }
             printf("%lld\n", s); }
""",
    "python": "n, *xs = map(int, input().split())\nprint(sum(xs))\n",
}
CHECKER = r"""
#include "testlib.h"
int main(int argc, char* argv[]) {
    registerTestlibCmd(argc, argv);
    long long want = ans.readLong(), got = ouf.readLong();
    if (got != want) quitf(_wa, "expected %lld, found %lld", want, got);
    quitf(_ok, "%lld", got);
}
"""


def problem(language: str, count: int, checker: object) -> Submission:
    tests = []
    for i in range(count):
        numbers = list(range(i, i + 100))
        stdin = f"{len(numbers)} " + " ".join(map(str, numbers))
        tests.append(TestCase(stdin=stdin, expected=str(sum(numbers))))
    return Submission(language=language, code=PROGRAMS[language], tests=tests, checker=checker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="process")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tests", type=int, default=50)
    args = parser.parse_args()
    checker = CheckerProgram(language="cpp", code=CHECKER, files=[TESTLIB])
    kinds = {
        (language, name): problem(language, args.tests, spec)
        for language in PROGRAMS
        for name, spec in (("tokens", "tokens"), ("checker program", checker))
    }
    samples: dict[tuple[str, str], list[float]] = {kind: [] for kind in kinds}
    sandbox = codeexec.get_sandbox(args.backend, slots=1)
    with sandbox, codeexec.Executor(sandbox) as executor:
        for kind, sub in kinds.items():  # compiles (program and checker) happen here
            result = executor.run(sub)
            assert result.verdict is codeexec.Verdict.ACCEPTED, (kind, result.tests[0])
        for _ in range(args.rounds):
            for kind, sub in kinds.items():
                started = time.perf_counter()
                executor.run(sub)
                samples[kind].append(time.perf_counter() - started)
    report = {}
    for language in PROGRAMS:
        plain = statistics.median(samples[language, "tokens"])
        program = statistics.median(samples[language, "checker program"])
        ratio = program / plain
        report[language] = {"tokens": plain, "checker program": program, "ratio": ratio}
        print(
            f"{language:>6} submission, {args.tests} tests: tokens {plain * 1000:6.1f} ms,"
            f" checker program {program * 1000:6.1f} ms: {ratio:.2f}x [target <= {TARGET}x]"
        )
    report["slots"] = slots_side_by_side(args.backend, args.rounds)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "judging.json").write_text(
        json.dumps(
            {
                "backend": args.backend,
                "tests": args.tests,
                "medians": report,
                "samples": {" / ".join(kind): values for kind, values in samples.items()},
            },
            indent=2,
        )
    )


SLOTS_TARGET = 0.6


def slots_side_by_side(backend: str, rounds: int) -> dict[str, object]:
    """200 tests on one slot against two; stop-at-first-failure by where it fails."""
    passing = problem("python", 200, "tokens")
    failing = {
        at: Submission(
            language="python",
            code=f"n, *xs = map(int, input().split())\nprint(sum(xs) + (xs[0] == {at}))\n",
            tests=passing.tests,
            stop_on_failure=True,
        )
        for at in (20, 100, 180)
    }
    times: dict[str, list[float]] = {"1 slot": [], "2 slots": []}
    failing_times: dict[int, list[float]] = {at: [] for at in failing}
    one, two = codeexec.get_sandbox(backend, slots=1), codeexec.get_sandbox(backend, slots=2)
    with one, two, codeexec.Executor(one) as ex1, codeexec.Executor(two) as ex2:
        for executor in (ex1, ex2):
            executor.run(passing)
        for _ in range(max(3, rounds // 2)):
            for name, executor in (("1 slot", ex1), ("2 slots", ex2)):
                started = time.perf_counter()
                executor.run(passing)
                times[name].append(time.perf_counter() - started)
            for at, sub in failing.items():
                started = time.perf_counter()
                result = ex2.run(sub)
                failing_times[at].append(time.perf_counter() - started)
                assert result.tests[at].verdict is codeexec.Verdict.WRONG_ANSWER, at
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["2 slots"] / medians["1 slot"]
    print(
        f"200 tests: 1 slot {medians['1 slot'] * 1000:.0f} ms, 2 slots"
        f" {medians['2 slots'] * 1000:.0f} ms: {ratio:.2f}x [target <= {SLOTS_TARGET}x]"
    )
    failing_medians = {at: statistics.median(values) for at, values in failing_times.items()}
    print(
        "stop_on_failure on 2 slots, failing at test "
        + ", ".join(f"{at + 1}: {value * 1000:.0f} ms" for at, value in failing_medians.items())
    )
    return {"medians": medians, "ratio": ratio, "failing": failing_medians}


if __name__ == "__main__":
    main()
