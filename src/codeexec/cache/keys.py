"""Fingerprints: a stable content key for "the same run".

Two submissions with equal fingerprints execute identically: same language (its name,
its definition: commands, file names, environment; and the detected toolchain version),
same files, tests, limits and checker, on the same sandbox (name and version). The key
is a SHA-256 over a canonical JSON document (sorted keys, contents replaced by their own
SHA-256), never Python's ``hash()``, so it is the same in every
process and on every machine. Host metadata (user ids, ...) is not part of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .._languages import Language
from .._model import Submission

__all__ = ["FINGERPRINT_VERSION", "fingerprint", "fingerprint_document"]

#: Bump when the document's shape or meaning changes: old keys must not match.
FINGERPRINT_VERSION = 3


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint_document(
    submission: Submission,
    *,
    language: Language,
    toolchain_version: str,
    sandbox: str,
    checker_identity: str | None = None,
    interactor_identity: str | None = None,
    generator_identities: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The canonical document a fingerprint is the digest of (useful for debugging).
    ``checker_identity``, ``interactor_identity``, ``generator_identities`` (by
    name): theirs, when the caller has worked them out already (with their
    toolchains)."""
    interactor = submission.interactor
    compiled = language.compiled
    return {
        "v": FINGERPRINT_VERSION,
        "language": language.name,
        # A host may register its own "python" with other flags: same name, other runs.
        "definition": language.definition(),
        "toolchain": toolchain_version,
        "code": None if submission.code is None else _digest(submission.code),
        "files": sorted((f.path, _digest(f.content), f.executable) for f in submission.files),
        "tests": [
            [
                _digest(t.stdin),
                None if t.expected is None else _digest(t.expected),
                list(t.args),
                t.name,
                t.points,
                None if t.limits is None else dict(t.limits),
                None if t.generate is None else list(t.generate),
            ]
            for t in submission.effective_tests
        ],
        # The tests above in order; which run and what they score.
        "groups": [
            [g.name, len(g.tests), g.points, list(g.depends_on), g.scoring]
            for g in submission.groups
        ],
        "stop_on_failure": submission.stop_on_failure,
        "limits": submission.limits.to_dict(applied=True),
        # Compile limits change a compiled language's outcome only.
        "compile_limits": submission.compile_limits.to_dict(applied=True) if compiled else None,
        "checker": (submission.checker.identity if checker_identity is None else checker_identity),
        "interactor": (
            interactor_identity
            if interactor_identity is not None
            else None
            if interactor is None
            else interactor.identity
        ),
        "generators": {
            g.name: (generator_identities or {}).get(g.name, g.identity)
            for g in submission.generators
        },
        "sandbox": sandbox,
    }


def fingerprint(
    submission: Submission,
    *,
    language: Language,
    toolchain_version: str,
    sandbox: str,
    checker_identity: str | None = None,
    interactor_identity: str | None = None,
    generator_identities: Mapping[str, str] | None = None,
) -> str:
    """The submission's content key: 64 hex digits."""
    document = fingerprint_document(
        submission,
        language=language,
        toolchain_version=toolchain_version,
        sandbox=sandbox,
        checker_identity=checker_identity,
        interactor_identity=interactor_identity,
        generator_identities=generator_identities,
    )
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _digest(canonical.encode())
