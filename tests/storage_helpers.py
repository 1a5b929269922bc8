"""Submissions and results to store, made without running anything (the store keeps
what it is given; running is tested elsewhere)."""

from __future__ import annotations

import datetime as dt
import os

import codeexec
from codeexec import Result, Submission, TestCase, TestResult

UTC = dt.UTC


def submission(
    code: str = "print(input())",
    *,
    user: str | None = "alice",
    problem: str | None = "echo",
    language: str = "python",
    tests: int = 2,
) -> Submission:
    metadata = {k: v for k, v in (("user_id", user), ("problem_id", problem)) if v is not None}
    return Submission(
        language=language,
        code=code,
        tests=[TestCase(stdin=f"{i}\n", expected=f"{i}\n", name=f"t{i}") for i in range(tests)],
        limits=codeexec.Limits(cpu_time=1, memory="64M"),
        metadata=metadata,
    )


def result(
    verdict: str = "accepted",
    *,
    stdout: str = "0\n",
    tests: int = 2,
    cpu: float = 0.02,
    memory: int = 9 << 20,
) -> Result:
    return Result(
        verdict=verdict,
        tests=[
            TestResult(
                name=f"t{i}",
                verdict=verdict if i == tests - 1 else "accepted",
                exit_code=0,
                cpu_time=cpu * (i + 1),
                wall_time=cpu * (i + 2),
                memory_peak=memory + i,
                stdout=stdout,
                stderr="",
            )
            for i in range(tests)
        ],
        fingerprint=os.urandom(32).hex(),
        backend="process",
        total_time=0.1,
    )


def days_ago(days: float, now: dt.datetime | None = None) -> dt.datetime:
    return (now or dt.datetime.now(UTC)) - dt.timedelta(days=days)
