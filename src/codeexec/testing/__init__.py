"""Test helpers for codeexec and for third-party sandboxes (needs pytest).

:class:`SandboxConformance` is the suite every sandbox backend must pass; see its
module for how to run it against your own backend.
"""

from ._conformance import CASES, SandboxConformance, load_cases

__all__ = ["CASES", "SandboxConformance", "load_cases"]
