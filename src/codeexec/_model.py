"""The data model: what a host submits and what it gets back.

Everything here is immutable (attrs ``frozen``) and validated on construction, so a bad
submission fails with a :class:`~codeexec.SubmissionError` before anything runs.
Units: seconds for times, bytes for sizes (sizes also accept ``"256M"``).
"""

from __future__ import annotations

import enum
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._checkers import Checker, get_checker
from ._errors import LimitsError, SubmissionError
from ._units import parse_duration, parse_size

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_FILES_BYTES",
    "MAX_TESTS",
    "CompileResult",
    "File",
    "Limits",
    "Result",
    "Submission",
    "TestCase",
    "TestResult",
    "Verdict",
]

#: More tests than this in one submission is refused (split the submission instead).
MAX_TESTS = 4096
#: The files of one submission (code included) may add up to at most this many bytes.
MAX_FILES_BYTES = 32 * 1024 * 1024
#: A test's extra argv may add up to at most this many bytes.
MAX_ARGS_BYTES = 16 * 1024
#: A File's path: at most this many directory levels, bytes, and bytes a name.
MAX_PATH_DEPTH = 32
MAX_PATH_BYTES = 1024
MAX_NAME_BYTES = 255


class Verdict(enum.StrEnum):
    """The judgement of one test, or of a whole submission."""

    ACCEPTED = "accepted"
    WRONG_ANSWER = "wrong_answer"
    TIME_LIMIT_EXCEEDED = "time_limit_exceeded"
    MEMORY_LIMIT_EXCEEDED = "memory_limit_exceeded"
    OUTPUT_LIMIT_EXCEEDED = "output_limit_exceeded"
    RUNTIME_ERROR = "runtime_error"
    COMPILATION_ERROR = "compilation_error"
    INTERNAL_ERROR = "internal_error"

    @property
    def short(self) -> str:
        """The judges' abbreviation: AC, WA, TLE, MLE, OLE, RE, CE, IE."""
        return _SHORT[self]


_SHORT = {
    Verdict.ACCEPTED: "AC",
    Verdict.WRONG_ANSWER: "WA",
    Verdict.TIME_LIMIT_EXCEEDED: "TLE",
    Verdict.MEMORY_LIMIT_EXCEEDED: "MLE",
    Verdict.OUTPUT_LIMIT_EXCEEDED: "OLE",
    Verdict.RUNTIME_ERROR: "RE",
    Verdict.COMPILATION_ERROR: "CE",
    Verdict.INTERNAL_ERROR: "IE",
}


def str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    """attrs converter: any iterable of strings to a tuple (typed, unlike ``tuple``)."""
    return tuple(value)


# ---------------------------------------------------------------------------- limits


def _seconds(value: object, what: str) -> float:
    seconds = parse_duration(value, what=what)
    if seconds <= 0:
        raise LimitsError(f"{what}: must be positive, got {value!r}")
    return seconds


def _cpu_time(value: object) -> float:
    return _seconds(value, "cpu_time")


def _wall_time(value: object) -> float | None:
    return None if value is None else _seconds(value, "wall_time")


def _bytes(value: object, what: str, minimum: int) -> int:
    size = parse_size(value, what=what)
    if size < minimum:
        raise LimitsError(f"{what}: must be at least {minimum} bytes, got {value!r}")
    return size


def _memory(value: object) -> int:
    return _bytes(value, "memory", 4 * 1024 * 1024)


def _output(value: object) -> int:
    return _bytes(value, "output", 1)


def _file_size(value: object) -> int:
    return _bytes(value, "file_size", 1)


def _pids(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitsError(f"pids: expected a whole number, got {value!r}")
    if value < 1:
        raise LimitsError(f"pids: must be at least 1, got {value!r}")
    return value


def _network(value: object) -> bool:
    if not isinstance(value, bool):
        raise LimitsError(f"network: expected True or False, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class Limits:
    """Resource limits for one run of a program.

    - ``cpu_time``: seconds of CPU, all processes and threads of the run together.
    - ``wall_time``: seconds of real time; default ``3 * cpu_time + 1``.
    - ``memory``: bytes of RAM+swap for the whole run (cgroup); accepts ``"256M"``.
    - ``pids``: processes and threads alive at once.
    - ``output``: bytes of stdout+stderr kept; more is ``output_limit_exceeded``.
    - ``file_size``: the largest file the program may write, and the size of its
      scratch space.
    - ``network``: ``False`` (default) leaves the program without any network.
    """

    cpu_time: float = attrs.field(default=2.0, converter=_cpu_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)
    memory: int = attrs.field(default=256 * 2**20, converter=_memory)
    pids: int = attrs.field(default=64, converter=_pids)
    output: int = attrs.field(default=2**20, converter=_output)
    file_size: int = attrs.field(default=16 * 2**20, converter=_file_size)
    network: bool = attrs.field(default=False, converter=_network)

    @property
    def effective_wall_time(self) -> float:
        """The wall time actually applied."""
        return self.wall_time if self.wall_time is not None else 3 * self.cpu_time + 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict, with ``wall_time`` resolved."""
        return {
            "cpu_time": self.cpu_time,
            "wall_time": self.effective_wall_time,
            "memory": self.memory,
            "pids": self.pids,
            "output": self.output,
            "file_size": self.file_size,
            "network": self.network,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        return cls(**dict(data))

    @classmethod
    def coerce(cls, value: object, *, what: str = "limits") -> Limits:
        """Accept a Limits, a dict of its fields, or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Limits):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in attrs.fields(cls)}
            if unknown:
                raise LimitsError(f"{what}: unknown field(s) {', '.join(sorted(unknown))}")
            return cls(**dict(value))
        raise LimitsError(f"{what}: expected Limits or a dict, got {type(value).__name__}")


#: Limits for a compile step unless a submission says otherwise: compilers need more.
DEFAULT_COMPILE_LIMITS = Limits(
    cpu_time=10.0, wall_time=20.0, memory="1G", pids=64, output="1M", file_size="64M"
)


# ---------------------------------------------------------------------------- inputs


def _to_bytes(value: object, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SubmissionError(f"{what}: not encodable as UTF-8: {exc}") from None
    raise SubmissionError(f"{what}: expected str or bytes, got {type(value).__name__}")


def _content(value: object) -> bytes:
    return _to_bytes(value, "file content")


def _stdin(value: object) -> bytes:
    return _to_bytes(value, "stdin")


def _expected(value: object) -> bytes | None:
    return None if value is None else _to_bytes(value, "expected")


def _code(value: object) -> bytes | None:
    return None if value is None else _to_bytes(value, "code")


def _relative_path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise SubmissionError(f"file path must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise SubmissionError(f"file path contains a NUL byte: {value!r}")
    normal = posixpath.normpath(value)
    if normal.startswith(("/", "../")) or normal in ("..", "."):
        raise SubmissionError(f"file path must stay inside the work directory: {value!r}")
    # Bounded so the host never walks (or makes) a tree deeper than a program could use.
    parts = normal.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise SubmissionError(
            f"file path has {len(parts)} levels (at most {MAX_PATH_DEPTH}): {value[:80]!r}..."
        )
    if len(normal.encode()) > MAX_PATH_BYTES:
        raise SubmissionError(f"file path is longer than {MAX_PATH_BYTES} bytes: {value[:80]!r}...")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        raise SubmissionError(f"a name in file path is longer than {MAX_NAME_BYTES} bytes")
    return normal


@attrs.frozen
class File:
    """A file placed in the program's work directory before it runs."""

    path: str = attrs.field(converter=_relative_path)
    content: bytes = attrs.field(converter=_content)
    executable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "content": self.content.decode("latin-1"),
            "executable": self.executable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> File:
        return cls(data["path"], data["content"].encode("latin-1"), data.get("executable", False))


def _args(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"args must be a sequence of strings, got {value!r}")
    for arg in value:
        if not isinstance(arg, str) or "\x00" in arg:
            raise SubmissionError(f"each arg must be a string without NUL bytes, got {arg!r}")
    if sum(len(arg.encode()) + 1 for arg in value) > MAX_ARGS_BYTES:
        raise SubmissionError(f"args add up to more than {MAX_ARGS_BYTES} bytes")
    return tuple(value)


def _compile_limits(value: object) -> Limits:
    return DEFAULT_COMPILE_LIMITS if value is None else Limits.coerce(value, what="compile_limits")


def _limits(value: object) -> Limits:
    return Limits.coerce(value)


@attrs.frozen
class TestCase:
    """One test: the program's stdin, the expected stdout (or None), extra argv."""

    __test__ = False  # not a pytest test class

    stdin: bytes = attrs.field(default=b"", converter=_stdin)
    expected: bytes | None = attrs.field(default=None, converter=_expected)
    args: tuple[str, ...] = attrs.field(default=(), converter=_args)
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "stdin": self.stdin.decode("latin-1"),
            "expected": None if self.expected is None else self.expected.decode("latin-1"),
            "args": list(self.args),
            "name": self.name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestCase:
        expected = data.get("expected")
        return cls(
            stdin=data.get("stdin", "").encode("latin-1"),
            expected=None if expected is None else expected.encode("latin-1"),
            args=tuple(data.get("args", ())),
            name=data.get("name"),
        )


def _files(value: object) -> tuple[File, ...]:
    if isinstance(value, Mapping):
        return tuple(File(path, content) for path, content in value.items())
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"files must be a sequence of File, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, File):
            raise SubmissionError(f"files must contain File objects, got {item!r}")
        out.append(item)
    return tuple(out)


def _tests(value: object) -> tuple[TestCase, ...]:
    if isinstance(value, TestCase):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"tests must be a sequence of TestCase, got {type(value).__name__}")
    if len(value) > MAX_TESTS:
        raise SubmissionError(f"too many tests: {len(value)} (at most {MAX_TESTS} per submission)")
    out = []
    for item in value:
        if isinstance(item, Mapping):
            item = TestCase(**item)
        if not isinstance(item, TestCase):
            raise SubmissionError(f"tests must contain TestCase objects, got {item!r}")
        out.append(item)
    return tuple(out)


def _language(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f"language must be a non-empty string, got {value!r}")
    return value.strip().lower()


def _metadata(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SubmissionError(f"metadata must be a mapping, got {type(value).__name__}")
    return dict(value)


@attrs.frozen(kw_only=True)
class Submission:
    """What a host asks codeexec to run: a program in a language, and its tests.

    ``code`` is the main source file's content; ``files`` adds more files (or holds the
    main file itself when ``code`` is None). With no tests, one test with empty stdin
    and no expected output is run. ``metadata`` carries host keys (``user_id``,
    ``problem_id``, ...) and never affects execution or the fingerprint.
    """

    language: str = attrs.field(converter=_language)
    code: bytes | None = attrs.field(default=None, converter=_code)
    files: tuple[File, ...] = attrs.field(default=(), converter=_files)
    tests: tuple[TestCase, ...] = attrs.field(default=(), converter=_tests)
    limits: Limits = attrs.field(default=None, converter=_limits)
    compile_limits: Limits = attrs.field(default=None, converter=_compile_limits)
    checker: Checker = attrs.field(default=None, converter=get_checker)
    metadata: Mapping[str, Any] = attrs.field(default=None, converter=_metadata, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.code is None and not self.files:
            raise SubmissionError("a submission needs code or files")
        if self.code is not None and not self.code.strip():
            raise SubmissionError("code is empty")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise SubmissionError(f"duplicate file paths: {sorted(paths)}")
        total = len(self.code or b"") + sum(len(f.content) for f in self.files)
        if total > MAX_FILES_BYTES:
            raise SubmissionError(
                f"code and files add up to {total} bytes; at most {MAX_FILES_BYTES} are accepted"
            )

    @property
    def effective_tests(self) -> tuple[TestCase, ...]:
        """The tests to run: the given ones, or a single empty-stdin test."""
        return self.tests or (TestCase(),)

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "code": None if self.code is None else self.code.decode("latin-1"),
            "files": [f.to_dict() for f in self.files],
            "tests": [t.to_dict() for t in self.tests],
            "limits": self.limits.to_dict(),
            "compile_limits": self.compile_limits.to_dict(),
            "checker": self.checker.identity,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Submission:
        """The submission ``to_dict`` gave (built-in checkers only: a callable checker
        cannot be rebuilt from data, and raises :class:`SubmissionError`)."""
        from ._checkers import checker_from_identity

        code = data.get("code")
        return cls(
            language=data["language"],
            code=None if code is None else code.encode("latin-1"),
            files=[File.from_dict(f) for f in data.get("files", ())],
            tests=[TestCase.from_dict(t) for t in data.get("tests", ())],
            limits=Limits.from_dict(data["limits"]) if "limits" in data else None,
            compile_limits=(
                Limits.from_dict(data["compile_limits"]) if "compile_limits" in data else None
            ),
            checker=checker_from_identity(data.get("checker", "default")),
            metadata=data.get("metadata"),
        )


# ---------------------------------------------------------------------------- outputs


def _decode(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


@attrs.frozen(kw_only=True)
class Measured:
    """What a sandbox measured of one program run (a test's or the compiler's).

    Output is decoded as UTF-8, invalid bytes replaced; times in seconds, memory in
    bytes (the peak of all the run's processes together).
    """

    exit_code: int | None = None
    signal: int | None = None
    cpu_time: float = 0.0
    wall_time: float = 0.0
    memory_peak: int = 0
    stdout: str = attrs.field(default="", converter=_decode)
    stderr: str = attrs.field(default="", converter=_decode)


@attrs.frozen(kw_only=True)
class TestResult(Measured):
    """The outcome of one test."""

    __test__ = False

    name: str | None = None
    verdict: Verdict = attrs.field(converter=Verdict)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: ``"cpu"`` or ``"wall"`` when the verdict is a time limit, else None.
    time_limit: str | None = None
    #: Why the verdict: a checker's reason, the signal's name, the sandbox failure.
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["verdict"] = self.verdict.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        return cls(**dict(data))


@attrs.frozen(kw_only=True)
class CompileResult(Measured):
    """The outcome of the compile step; ``ok`` False gives ``compilation_error``."""

    ok: bool
    #: The artifact came from an earlier compile of the same source.
    cached: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompileResult:
        return cls(**dict(data))


def _test_results(value: Iterable[TestResult]) -> tuple[TestResult, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class Result:
    """The outcome of a submission.

    ``verdict`` is the first non-accepted test's verdict (``compilation_error`` when
    the compile step failed), else ``accepted``. ``reproducibility`` records what is
    needed to run it again the same way: toolchain and its version, backend and its
    version, and the limits actually applied.
    """

    verdict: Verdict = attrs.field(converter=Verdict)
    tests: tuple[TestResult, ...] = attrs.field(default=(), converter=_test_results)
    compile: CompileResult | None = None
    cached: bool = False
    fingerprint: str = ""
    backend: str = ""
    queue_time: float = 0.0
    total_time: float = 0.0
    reproducibility: Mapping[str, Any] = attrs.field(factory=dict)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.ACCEPTED

    @property
    def cpu_time(self) -> float:
        """The largest CPU time over the tests (what judges show)."""
        return max((t.cpu_time for t in self.tests), default=0.0)

    @property
    def memory_peak(self) -> int:
        """The largest memory peak over the tests."""
        return max((t.memory_peak for t in self.tests), default=0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Result.from_dict(r.to_dict()) == r``."""
        return {
            "verdict": self.verdict.value,
            "tests": [t.to_dict() for t in self.tests],
            "compile": None if self.compile is None else self.compile.to_dict(),
            "cached": self.cached,
            "fingerprint": self.fingerprint,
            "backend": self.backend,
            "queue_time": self.queue_time,
            "total_time": self.total_time,
            "reproducibility": dict(self.reproducibility),
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        compile_data = data.get("compile")
        return cls(
            verdict=data["verdict"],
            tests=tuple(TestResult.from_dict(t) for t in data.get("tests", ())),
            compile=None if compile_data is None else CompileResult.from_dict(compile_data),
            cached=data.get("cached", False),
            fingerprint=data.get("fingerprint", ""),
            backend=data.get("backend", ""),
            queue_time=data.get("queue_time", 0.0),
            total_time=data.get("total_time", 0.0),
            reproducibility=data.get("reproducibility", {}),
            metadata=data.get("metadata", {}),
        )


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
