"""Test helpers for codeexec and for third-party sandboxes (needs pytest).

:class:`SandboxConformance` is the suite every sandbox backend must pass; see its
module for how to run it against your own backend. On a slow machine (an emulated VM),
set ``CODEEXEC_TIME_SCALE`` to how much slower it is: the suite's time limits and
bounds are multiplied by it (:data:`TIME_SCALE`, :func:`scaled`).
"""

from ._conformance import CASES, TIME_SCALE, SandboxConformance, load_cases, scaled

__all__ = ["CASES", "TIME_SCALE", "SandboxConformance", "load_cases", "scaled"]
