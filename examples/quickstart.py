"""A real job on the embedded defaults: the process sandbox, compile once, judge.

Run with: python examples/quickstart.py
"""

import codeexec

CPP = r"""
#include <iostream>
int main() { long long a, b; std::cin >> a >> b; std::cout << a + b << "\n"; }
"""

with codeexec.Executor() as executor:
    submission = codeexec.Submission(
        language="cpp",
        code=CPP,
        tests=[
            codeexec.TestCase(stdin="1 2", expected="3", name="small"),
            codeexec.TestCase(stdin="-7 7", expected="0", name="zero"),
            codeexec.TestCase(stdin="4000000000 4000000000", expected="8000000000", name="big"),
        ],
        limits=codeexec.Limits(cpu_time=1, memory="128M"),
        metadata={"user_id": "u1", "problem_id": "a-plus-b"},
    )
    result = executor.run(submission)
    print(f"verdict: {result.verdict.value}")
    for test in result.tests:
        print(
            f"  {test.name}: {test.verdict.value}, cpu {test.cpu_time * 1000:.1f} ms,"
            f" memory {test.memory_peak / 2**20:.1f} MiB"
        )
    print(f"backend: {result.backend}, fingerprint: {result.fingerprint[:16]}…")
    # A busy loop is stopped at its CPU limit and judged, not left running.
    loop = executor.run(codeexec.Submission(language="python", code="while True: pass",
                                            limits=codeexec.Limits(cpu_time=0.5)))
    print(f"busy loop: {loop.verdict.value} after {loop.tests[0].cpu_time:.2f}s of CPU")
