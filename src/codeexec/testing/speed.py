"""How fast this machine runs what sandboxes do, in seconds (``python -m
codeexec.testing.speed``): starting processes and running Python. An emulated VM
compares its figure with the host's to set ``CODEEXEC_TIME_SCALE``."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def measure(rounds: int = 5) -> float:
    """The median seconds of one round: 10 process starts and a fixed Python loop."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(10):
            subprocess.run(["/bin/true"], check=True)
        total = 0
        for i in range(300_000):
            total += i * i
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


if __name__ == "__main__":
    print(f"{measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5):.6f}")
