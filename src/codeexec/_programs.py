"""Programs a problem brings besides the submission: a checker program ("special
judge"), written in any registered language, compiled once and run in the same sandbox
as the submission, with limits of its own.

A checker program is run once per test as ``checker input.txt output.txt answer.txt``
(the testlib argument order: the test's input, the program's output, the expected
answer; an absent expected answer is an empty file) and says what it thinks with its
exit code, as testlib's checkers do:

====  ==================================================================
0     accepted
1     wrong answer (8, testlib's unexpected end of file, too)
2     presentation error (4, testlib's "wrong output format", too)
3     the checker failed: ``internal_error``, the problem is at fault
7     partial points: ``points X`` (or ``partially correct X``) on its stderr, X in
      the test's own points (:attr:`~codeexec.TestCase.worth`, 1 unless given)
====  ==================================================================

Its stderr (the first KiB) becomes the test's message. A checker that crashes, runs out
of its limits or answers anything else makes the test ``internal_error``; a checker
that does not compile makes the whole submission ``internal_error``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ._checkers import Check, Checker, checker_from_identity
from ._errors import FormatError, SubmissionError
from ._model import (
    DEFAULT_COMPILE_LIMITS,
    File,
    Limits,
    Submission,
    TestCase,
    Verdict,
    _code,
    _files,
    _language,
    _StrictKeywords,
    read_fields,
)

if TYPE_CHECKING:
    from .backends._protocol import RunOutcome

__all__ = [
    "CHECKER_FILES",
    "CheckerProgram",
    "Generator",
    "Interactor",
    "Program",
    "ProgramVerdict",
    "checker_from_json",
    "checker_to_json",
    "testlib_verdict",
]

#: The files a checker program is given, in its argv's order.
CHECKER_FILES = ("input.txt", "output.txt", "answer.txt")
#: How much of a checker's stderr a test's message keeps.
MESSAGE_BYTES = 1024
#: Limits a checker program gets unless it says otherwise.
DEFAULT_CHECKER_LIMITS = Limits(cpu_time=5.0, memory="512M")

_POINTS = re.compile(
    rb"^\s*(?:points|partially correct)\s+([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", re.M
)


def _program_limits(value: object) -> Limits:
    return DEFAULT_CHECKER_LIMITS if value is None else Limits.coerce(value, what="checker limits")


def _compile_limits(value: object) -> Limits:
    if value is None:
        return DEFAULT_COMPILE_LIMITS
    return Limits.coerce(value, what="checker compile_limits")


@attrs.frozen(kw_only=True)
class Program(_StrictKeywords):
    """A program a problem brings: ``language``, ``code`` and ``files`` as in a
    :class:`~codeexec.Submission` (a testlib program brings ``File("testlib.h", ...)``);
    ``limits`` are its own per run (5 s of CPU and 512 MiB unless given)."""

    language: str = attrs.field(converter=_language)
    code: bytes | None = attrs.field(default=None, converter=_code)
    files: tuple[File, ...] = attrs.field(default=(), converter=_files)
    limits: Limits = attrs.field(default=None, converter=_program_limits)
    compile_limits: Limits = attrs.field(default=None, converter=_compile_limits)
    #: The program as a submission of its own (validated like one): how it is built.
    program: Submission = attrs.field(init=False, eq=False, repr=False)
    kind = "program"
    cacheable = True

    def __attrs_post_init__(self) -> None:
        program = Submission(
            language=self.language,
            code=self.code,
            files=self.files,
            limits=self.limits,
            compile_limits=self.compile_limits,
        )
        object.__setattr__(self, "program", program)
        for path in CHECKER_FILES:
            if any(f.path == path for f in program.files):
                raise SubmissionError(f"a {self.kind}'s files may not include {path!r}")

    @property
    def identity(self) -> str:
        """A digest of the program, its files and limits (the toolchain's version is
        added where it is known, when a submission is prepared)."""
        document = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        tag = self.kind.replace(" ", "-")
        return f"{tag}:" + hashlib.sha256(document.encode()).hexdigest()[:32]

    #: A subclass's own fields, kept by to_dict and from_dict beside the program's.
    _own_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; read back by :meth:`from_dict`."""
        data = self.program.to_dict()
        return {
            **{name: getattr(self, name) for name in self._own_fields},
            "language": data["language"],
            "code": data["code"],
            "files": data["files"],
            "limits": data["limits"],
            "compile_limits": data["compile_limits"],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The program ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        fields = dict(
            read_fields(
                data,
                cls.kind,
                ("language", *cls._own_fields),
                ("code", "files", "limits", "compile_limits"),
            )
        )
        own = {name: fields.pop(name) for name in cls._own_fields}
        try:
            program = Submission.from_dict({"format": 2, **fields})
        except SubmissionError as exc:
            raise FormatError(f"{cls.kind}: {exc}") from None
        return cls(
            **own,
            language=program.language,
            code=program.code,
            files=program.files,
            limits=program.limits,
            compile_limits=program.compile_limits,
        )


@attrs.frozen(kw_only=True)
class CheckerProgram(Program):
    """A checker written as a program: run once per test as ``checker input.txt
    output.txt answer.txt``, it answers with testlib's exit codes (see the module)."""

    kind = "checker program"
    name = "program"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        raise SubmissionError("a checker program runs in the sandbox; the executor runs it")


@attrs.frozen(kw_only=True)
class Interactor(Program):
    """The other side of an interactive problem: run at the same time as the
    submission, its stdout is the program's stdin and the program's stdout its stdin.

    It is started as ``interactor input.txt output.txt answer.txt`` (testlib's order:
    the test's input, a file it may write for a checker program, the expected answer)
    and answers with testlib's exit codes. Its wall time is at least the program's
    plus a second, so a program that stops talking runs out of time first.
    """

    kind = "interactor"


def _generator_name(value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise SubmissionError(
            f"a generator's name must be letters, digits, '_', '-' or '.', got {value!r}"
        )
    return value


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@attrs.frozen(kw_only=True)
class Generator(Program):
    """A program that writes tests' input, as Polygon's and DMOJ's generators do.

    A test names it with its arguments, ``TestCase(generate=("gen", "10", "7"))``: the
    generator runs once per distinct argument list (sandboxed, with its own
    ``limits``; its ``output`` limit is the largest input it may write), its stdout
    becomes the test's stdin, and that is cached by the generator's content and the
    arguments (a generator must be deterministic: testlib's seed from their
    arguments). A generator that fails makes its tests ``internal_error``.
    """

    kind = "generator"
    name: str = attrs.field(converter=_generator_name)

    _own_fields = ("name",)


def checker_to_json(checker: Checker) -> str | dict[str, Any]:
    """How a submission's checker travels: a built-in's identity, or a program."""
    if isinstance(checker, CheckerProgram):
        return {"program": checker.to_dict()}
    return checker.identity


def checker_from_json(value: object) -> Checker:
    """The checker :func:`checker_to_json` gave."""
    if isinstance(value, Mapping):
        fields = read_fields(value, "checker", ("program",))
        return CheckerProgram.from_dict(fields["program"])
    if not isinstance(value, str):
        raise FormatError(f"checker: expected a name or {{'program': ...}}, got {value!r:.80}")
    return checker_from_identity(value)


@attrs.frozen
class ProgramVerdict:
    """What a checker program said of one test: the verdict, the share of the test's
    points it gave (0 to 1) and its message."""

    verdict: Verdict
    share: float
    message: str


def _message(stderr: bytes) -> str:
    return stderr[:MESSAGE_BYTES].decode("utf-8", "replace").strip()


def testlib_verdict(
    outcome: RunOutcome, failure: str | None, worth: float, what: str = "checker"
) -> ProgramVerdict:
    """Read a checker program's or an interactor's end (``what`` it is), testlib's
    conventions. ``failure``: why the run did not end cleanly (a limit, a signal),
    already worded, or None."""
    message = _message(outcome.stderr)
    if outcome.error is not None:
        return ProgramVerdict(
            Verdict.INTERNAL_ERROR, 0.0, f"the {what} could not run: {outcome.error}"
        )
    if failure is not None:
        return ProgramVerdict(Verdict.INTERNAL_ERROR, 0.0, f"the {what} failed: {failure}")
    code = outcome.exit_code
    if code == 0:
        return ProgramVerdict(Verdict.ACCEPTED, 1.0, message)
    if code in (1, 8):
        return ProgramVerdict(Verdict.WRONG_ANSWER, 0.0, message or "wrong answer")
    if code in (2, 4):
        return ProgramVerdict(Verdict.PRESENTATION_ERROR, 0.0, message or "presentation error")
    if code == 3:
        return ProgramVerdict(
            Verdict.INTERNAL_ERROR, 0.0, f"the {what} failed: {message or 'exit code 3'}"
        )
    if code == 7:
        return _points(outcome.stderr, message, worth, what)
    return ProgramVerdict(
        Verdict.INTERNAL_ERROR, 0.0, f"the {what} exited with code {code}: {message}"
    )


def _points(stderr: bytes, message: str, worth: float, what: str) -> ProgramVerdict:
    match = _POINTS.search(stderr[: 64 * 1024])
    if match is None:
        return ProgramVerdict(
            Verdict.INTERNAL_ERROR,
            0.0,
            f"the {what} gave partial points without a 'points X' line: {message}",
        )
    points = float(match.group(1))
    if not 0 <= points <= worth:
        return ProgramVerdict(
            Verdict.INTERNAL_ERROR,
            0.0,
            f"the {what} gave {points:g} points for a test worth {worth:g}: {message}",
        )
    share = points / worth if worth else 1.0
    if share >= 1.0:
        return ProgramVerdict(Verdict.ACCEPTED, 1.0, message)
    if share <= 0.0:
        return ProgramVerdict(Verdict.WRONG_ANSWER, 0.0, message)
    return ProgramVerdict(Verdict.PARTIALLY_ACCEPTED, share, message)
