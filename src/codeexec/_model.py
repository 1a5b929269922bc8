"""The data model: what a host submits and what it gets back.

Everything here is immutable (attrs ``frozen``) and validated on construction, so a bad
submission fails with a :class:`~codeexec.SubmissionError` before anything runs.
Units: seconds for times, bytes for sizes (sizes also accept ``"256M"``).
"""

from __future__ import annotations

import base64
import binascii
import difflib
import enum
import json
import math
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._checkers import Checker, get_checker
from ._errors import CodeExecError, FormatError, LimitsError, SubmissionError
from ._units import parse_duration, parse_size

__all__ = [
    "MAX_ARGS_BYTES",
    "MAX_FILES_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_TESTS",
    "CompileResult",
    "File",
    "GroupResult",
    "Limits",
    "Result",
    "Submission",
    "TestCase",
    "TestGroup",
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
#: A submission's metadata, as JSON, may take at most this many bytes.
MAX_METADATA_BYTES = 64 * 1024
#: The largest limits accepted: beyond them a limit means nothing on any machine (and
#: output is held in memory, so its cap is lower).
MAX_SECONDS = 24 * 3600.0
MAX_MEMORY = 2**40
MAX_PIDS = 4 * 1024 * 1024
MAX_OUTPUT = 2**30
MAX_FILE_SIZE = 2**40
#: The smallest memory limit: a cgroup holds a run to a few pages; a small C program
#: runs in less than a MiB.
MIN_MEMORY = 256 * 1024
#: The most points one test or group may be worth.
MAX_POINTS = 1e9

#: The shape of the dicts ``to_dict`` makes. Format 1 (no ``"format"`` key) held bytes
#: as latin-1 text; format 2 holds UTF-8 bytes as text and other bytes as
#: ``{"base64": ...}``, so both read back byte for byte.
DICT_FORMAT = 2


class _StrictKeywords:
    """Refuses unknown keyword arguments with the class's own typed error (and a
    suggestion), instead of Python's bare ``TypeError``: ``Limits(cputime=1)`` says
    ``did you mean 'cpu_time'?``."""

    _unknown_error: type[CodeExecError] = SubmissionError

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        known = {field.alias for field in attrs.fields(cls) if field.init}  # type: ignore[arg-type]
        unknown = sorted(set(kwargs) - known)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise cls._unknown_error(
                f"{cls.__name__}: unknown field {', '.join(hints)};"
                f" fields are {', '.join(sorted(known))}"
            )
        return object.__new__(cls)


def _utf8(value: str, what: str) -> str:
    """``value`` if it is encodable as UTF-8 (no lone surrogates, which nothing can
    store or send), else :class:`SubmissionError`."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SubmissionError(f"{what} is not valid text ({exc.reason}): {value!r:.80}") from None
    return value


def bytes_to_json(data: bytes) -> str | dict[str, str]:
    """Bytes as JSON: the text when they are UTF-8, else ``{"base64": ...}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def bytes_from_json(value: object, what: str, *, legacy: bool = False) -> bytes:
    """What :func:`bytes_to_json` made, back to the same bytes (``legacy``: format 1)."""
    if isinstance(value, str):
        try:
            return value.encode("latin-1" if legacy else "utf-8")
        except UnicodeEncodeError as exc:
            raise FormatError(f"{what}: not encodable: {exc}") from None
    if isinstance(value, Mapping) and set(value) == {"base64"}:
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, TypeError, ValueError) as exc:
            raise FormatError(f"{what}: bad base64: {exc}") from None
    raise FormatError(f"{what}: expected text or {{'base64': ...}}, got {value!r:.80}")


def read_fields(
    data: object, what: str, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> Mapping[str, Any]:
    """``data`` checked to be a mapping with every ``required`` key and no key outside
    ``required`` and ``optional``; :class:`FormatError` otherwise."""
    if not isinstance(data, Mapping):
        raise FormatError(f"{what}: expected a dict, got {type(data).__name__}")
    required = tuple(required)
    missing = [key for key in required if key not in data]
    if missing:
        raise FormatError(f"{what}: missing {', '.join(missing)}")
    unknown = sorted(set(data) - set(required) - set(optional), key=str)
    if unknown:
        raise FormatError(f"{what}: unknown key(s) {', '.join(map(repr, unknown))}")
    return data


def _from_fields(cls: Any, data: object, what: str, **converted: Any) -> Any:
    """``cls(**data)`` for a dict ``to_dict`` made (attrs field names), with
    ``converted`` values replacing the raw ones; any error a :class:`FormatError`."""
    names = [field.name for field in attrs.fields(cls)]
    fields = dict(read_fields(data, what, optional=names))
    fields.update(converted)
    try:
        return cls(**fields)
    except FormatError:
        raise
    except (CodeExecError, TypeError, ValueError) as exc:
        # attrs' validators raise TypeError(message, attribute, ...): the message.
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        raise FormatError(f"{what}: {message}") from exc


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
    #: A checker program said the output is malformed (testlib's ``_pe``).
    PRESENTATION_ERROR = "presentation_error"
    #: A checker gave part of the test's points.
    PARTIALLY_ACCEPTED = "partially_accepted"
    #: Not run: its group, a group it depends on, or the submission stopped earlier.
    SKIPPED = "skipped"

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
    Verdict.PRESENTATION_ERROR: "PE",
    Verdict.PARTIALLY_ACCEPTED: "PA",
    Verdict.SKIPPED: "SK",
}


def str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    """attrs converter: any iterable of strings to a tuple (typed, unlike ``tuple``)."""
    return tuple(value)


# ---------------------------------------------------------------------------- limits


def _seconds(value: object, what: str, maximum: float = MAX_SECONDS) -> float:
    seconds = parse_duration(value, what=what)
    if not 0 < seconds <= maximum:
        raise LimitsError(f"{what}: must be more than 0 and at most {maximum:g}s, got {value!r}")
    return seconds


def _cpu_time(value: object) -> float:
    return _seconds(value, "cpu_time")


def _wall_time(value: object) -> float | None:
    # cpu_time's default wall time (3 * cpu_time + 1) must fit under the cap too.
    return None if value is None else _seconds(value, "wall_time", 3 * MAX_SECONDS + 1)


def _bytes(value: object, what: str, minimum: int, maximum: int) -> int:
    size = parse_size(value, what=what)
    if not minimum <= size <= maximum:
        raise LimitsError(f"{what}: must be from {minimum} to {maximum} bytes, got {value!r}")
    return size


def _memory(value: object) -> int:
    return _bytes(value, "memory", MIN_MEMORY, MAX_MEMORY)


def _address_space(value: object) -> int | None:
    if value is None:
        return None
    return _bytes(value, "address_space", MIN_MEMORY, MAX_MEMORY)


def _output(value: object) -> int:
    return _bytes(value, "output", 1, MAX_OUTPUT)


def _file_size(value: object) -> int:
    return _bytes(value, "file_size", 1, MAX_FILE_SIZE)


def _pids(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LimitsError(f"pids: expected a whole number, got {value!r}")
    if not 1 <= value <= MAX_PIDS:
        raise LimitsError(f"pids: must be from 1 to {MAX_PIDS}, got {value!r}")
    return value


def _network(value: object) -> bool:
    if not isinstance(value, bool):
        raise LimitsError(f"network: expected True or False, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class Limits(_StrictKeywords):
    """Resource limits for one run of a program.

    - ``cpu_time``: seconds of CPU, all processes and threads of the run together.
    - ``wall_time``: seconds of real time; default ``3 * cpu_time + 1``.
    - ``memory``: bytes of RAM+swap for the whole run (cgroup); accepts ``"256M"``.
    - ``pids``: processes and threads alive at once.
    - ``output``: bytes of stdout+stderr kept; more is ``output_limit_exceeded``.
    - ``file_size``: the largest file the program may write, and the size of its
      scratch space.
    - ``network``: ``False`` (default) leaves the program without any network.
    - ``address_space``: bytes of virtual memory per process (RLIMIT_AS), beside the
      cgroup's ``memory``, as DMOJ and Codeforces use: an allocation past it fails
      (``std::bad_alloc``, ``MemoryError``) instead of being granted and touched
      until the cgroup's OOM killer strikes. None (default): no such limit.

    Each limit has a ceiling (a day of CPU or wall time, 1 TiB of memory or file size,
    1 GiB of output, 4Mi pids): a larger value is a :class:`~codeexec.LimitsError`.
    """

    _unknown_error = LimitsError

    cpu_time: float = attrs.field(default=2.0, converter=_cpu_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)
    memory: int = attrs.field(default=256 * 2**20, converter=_memory)
    pids: int = attrs.field(default=64, converter=_pids)
    output: int = attrs.field(default=2**20, converter=_output)
    file_size: int = attrs.field(default=16 * 2**20, converter=_file_size)
    network: bool = attrs.field(default=False, converter=_network)
    address_space: int | None = attrs.field(default=None, converter=_address_space)

    @property
    def effective_wall_time(self) -> float:
        """The wall time actually applied."""
        return self.wall_time if self.wall_time is not None else 3 * self.cpu_time + 1.0

    def to_dict(self, *, applied: bool = False) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields as given (``wall_time`` None means the
        default), so ``Limits.from_dict(l.to_dict()) == l``. ``applied=True`` gives
        the wall time actually applied instead: equal runs, equal dicts (what cache
        keys and reproducibility records use)."""
        return {
            "cpu_time": self.cpu_time,
            "wall_time": self.effective_wall_time if applied else self.wall_time,
            "memory": self.memory,
            "pids": self.pids,
            "output": self.output,
            "file_size": self.file_size,
            "network": self.network,
            "address_space": self.address_space,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        """The limits ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        return _from_fields(cls, data, "limits")  # type: ignore[no-any-return]

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
    _utf8(value, "a file path")
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


def _is_executable(instance: Any, attribute: Any, value: object) -> None:
    if not isinstance(value, bool):
        raise SubmissionError(f"a file's executable flag must be True or False, got {value!r}")


@attrs.frozen
class File(_StrictKeywords):
    """A file placed in the program's work directory before it runs."""

    path: str = attrs.field(converter=_relative_path)
    content: bytes = attrs.field(converter=_content)
    executable: bool = attrs.field(default=False, validator=_is_executable)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; content as text when it is UTF-8, else ``{"base64": ...}``."""
        return {
            "path": self.path,
            "content": bytes_to_json(self.content),
            "executable": self.executable,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, legacy: bool = False) -> File:
        """The file ``to_dict`` gave, byte for byte (``legacy``: a format-1 dict)."""
        fields = read_fields(data, "file", ("path", "content"), ("executable",))
        return _from_fields(  # type: ignore[no-any-return]
            cls,
            fields,
            "file",
            content=bytes_from_json(fields["content"], "file content", legacy=legacy),
        )


def _args(value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"args must be a sequence of strings, got {value!r}")
    for arg in value:
        if not isinstance(arg, str) or "\x00" in arg:
            raise SubmissionError(f"each arg must be a string without NUL bytes, got {arg!r}")
        _utf8(arg, "an arg")
    if sum(len(arg.encode()) + 1 for arg in value) > MAX_ARGS_BYTES:
        raise SubmissionError(f"args add up to more than {MAX_ARGS_BYTES} bytes")
    return tuple(value)


def _test_name(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SubmissionError(f"a test's name must be a string or None, got {value!r}")
    return None if value is None else _utf8(value, "a test's name")


def _points(value: object, what: str = "points") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SubmissionError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or value > MAX_POINTS:
        raise SubmissionError(f"{what} must be between 0 and {MAX_POINTS}, got {value!r}")
    return float(value)


def _test_limits(value: object) -> Mapping[str, Any] | None:
    """A test's overrides of the submission's limits, each checked as a limit is."""
    if value is None:
        return None
    if isinstance(value, Limits):
        raise SubmissionError("a test's limits are overrides: give a dict of the fields it changes")
    if not isinstance(value, Mapping):
        raise SubmissionError(f"a test's limits must be a dict, got {type(value).__name__}")
    if "network" in value:
        raise SubmissionError("a test cannot change limits.network (the submission's holds)")
    checked = Limits.coerce(dict(value), what="a test's limits")
    return {name: getattr(checked, name) for name in sorted(value)}


def _generate(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    generate = _args(value)
    if not generate:
        raise SubmissionError("generate names a generator, then its arguments: got nothing")
    return generate


def _compile_limits(value: object) -> Limits:
    return DEFAULT_COMPILE_LIMITS if value is None else Limits.coerce(value, what="compile_limits")


def _limits(value: object) -> Limits:
    return Limits.coerce(value)


#: Other spellings of a test's fields that test files in the wild use.
_TEST_ALIASES = {
    "input": "stdin",
    "output": "expected",
    "expected_output": "expected",
    "answer": "expected",
}


@attrs.frozen
class TestCase(_StrictKeywords):
    """One test: the program's stdin, the expected stdout (or None), extra argv.

    ``points`` is what the test is worth where tests score one by one (a flat list of
    tests, or a group with ``scoring="sum"``); None counts as 1. ``limits`` overrides
    some of the submission's limits for this test (``{"cpu_time": 5}``).
    """

    __test__ = False  # not a pytest test class

    stdin: bytes = attrs.field(default=b"", converter=_stdin)
    expected: bytes | None = attrs.field(default=None, converter=_expected)
    args: tuple[str, ...] = attrs.field(default=(), converter=_args)
    name: str | None = attrs.field(default=None, converter=_test_name)
    points: float | None = attrs.field(default=None, converter=_points)
    limits: Mapping[str, Any] | None = attrs.field(default=None, converter=_test_limits)
    #: The stdin comes from a generator: its name, then its arguments.
    generate: tuple[str, ...] | None = attrs.field(default=None, converter=_generate)

    def __attrs_post_init__(self) -> None:
        if self.generate is not None and self.stdin:
            raise SubmissionError("a test's stdin comes from its generator or is given, not both")

    @property
    def worth(self) -> float:
        """The points this test is worth where tests score one by one."""
        return 1.0 if self.points is None else self.points

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; bytes as text when they are UTF-8, else ``{"base64": ...}``."""
        data: dict[str, Any] = {
            "stdin": bytes_to_json(self.stdin),
            "expected": None if self.expected is None else bytes_to_json(self.expected),
            "args": list(self.args),
            "name": self.name,
        }
        if self.points is not None:
            data["points"] = self.points
        if self.limits is not None:
            data["limits"] = dict(self.limits)
        if self.generate is not None:
            data["generate"] = list(self.generate)
        return data

    def applied(self, limits: Limits) -> Limits:
        """The limits this test runs with: ``limits`` with its overrides."""
        return limits if not self.limits else attrs.evolve(limits, **self.limits)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, legacy: bool = False) -> TestCase:
        """The test ``to_dict`` gave, byte for byte (``legacy``: a format-1 dict).

        Hand-written tests may also say ``input`` for ``stdin`` and ``output``,
        ``expected_output`` or ``answer`` for ``expected``; any other key is a
        :class:`~codeexec.FormatError` (a misspelt key would otherwise run the program
        with no input and judge nothing)."""
        if not isinstance(data, Mapping):
            raise FormatError(f"a test must be a dict, got {type(data).__name__}")
        fields: dict[str, Any] = {}
        for key, value in data.items():
            name = _TEST_ALIASES.get(key, key)
            if name in fields:
                raise FormatError(f"a test gives {name!r} twice (as {key!r} too)")
            fields[name] = value
        read_fields(
            fields,
            "test",
            optional=("stdin", "expected", "args", "name", "points", "limits", "generate"),
        )
        for name in ("stdin", "expected"):
            if fields.get(name) is not None:
                fields[name] = bytes_from_json(fields[name], f"test {name}", legacy=legacy)
        return _from_fields(cls, fields, "test")  # type: ignore[no-any-return]


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
            try:
                item = TestCase.from_dict(item)
            except FormatError as exc:
                raise SubmissionError(str(exc)) from None
        if not isinstance(item, TestCase):
            raise SubmissionError(f"tests must contain TestCase objects, got {item!r}")
        out.append(item)
    return tuple(out)


def _group_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f"a group's name must be a non-empty string, got {value!r}")
    return _utf8(value, "a group's name")


def _scoring(value: object) -> str:
    if value not in SCORING:
        raise SubmissionError(f"scoring must be one of {', '.join(SCORING)}, got {value!r}")
    return str(value)


#: How a group scores. ``"min"`` (IOI subtasks, Polygon's complete-group policy): its
#: ``points`` times the smallest share any of its tests earned, so all or nothing
#: unless a checker gives partial points; its first failed test skips the rest.
#: ``"sum"`` (Polygon's each-test policy): the points its tests earned, every test run.
SCORING = ("min", "sum")


@attrs.frozen(kw_only=True)
class TestGroup(_StrictKeywords):
    """A group of tests (a subtask, a batch) that scores as one.

    ``points`` is what the group is worth under ``scoring="min"``; under ``"sum"`` it
    is worth its tests' ``points`` (each 1 unless given). It scores only when every
    group in ``depends_on`` (names of groups listed before it) passed in full;
    otherwise its tests are ``skipped``, not run.
    """

    __test__ = False

    name: str = attrs.field(converter=_group_name)
    tests: tuple[TestCase, ...] = attrs.field(converter=_tests)
    points: float = attrs.field(default=0.0, converter=lambda v: _points(v, "a group's points"))
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=str_tuple)
    scoring: str = attrs.field(default="min", converter=_scoring)

    def __attrs_post_init__(self) -> None:
        if not self.tests:
            raise SubmissionError(f"group {self.name!r} has no tests")
        if self.scoring == "sum" and self.points:
            raise SubmissionError(
                f"group {self.name!r}: a group scored by 'sum' is worth its tests' points;"
                " give them points instead of the group"
            )

    @property
    def max_score(self) -> float:
        """The most points the group can give."""
        if self.scoring == "sum":
            return sum(t.worth for t in self.tests)
        return self.points

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tests": [t.to_dict() for t in self.tests],
            "points": self.points,
            "depends_on": list(self.depends_on),
            "scoring": self.scoring,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, legacy: bool = False) -> TestGroup:
        """The group ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        fields = dict(
            read_fields(data, "group", ("name", "tests"), ("points", "depends_on", "scoring"))
        )
        tests = fields["tests"]
        if not isinstance(tests, list | tuple):
            raise FormatError(f"group: tests must be a list, got {type(tests).__name__}")
        fields["tests"] = [TestCase.from_dict(t, legacy=legacy) for t in tests]
        return _from_fields(cls, fields, "group")  # type: ignore[no-any-return]


def _groups(value: object) -> tuple[TestGroup, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"groups must be a sequence of TestGroup, got {type(value).__name__}")
    out: list[TestGroup] = []
    for item in value:
        if isinstance(item, Mapping):
            try:
                item = TestGroup.from_dict(item)
            except FormatError as exc:
                raise SubmissionError(str(exc)) from None
        if not isinstance(item, TestGroup):
            raise SubmissionError(f"groups must contain TestGroup objects, got {item!r}")
        before = {g.name for g in out}
        if item.name in before:
            raise SubmissionError(f"two groups are named {item.name!r}")
        for dependency in item.depends_on:
            if dependency not in before:
                raise SubmissionError(
                    f"group {item.name!r} depends on {dependency!r}, which is not a group"
                    " listed before it"
                )
        out.append(item)
    total = sum(len(g.tests) for g in out)
    if total > MAX_TESTS:
        raise SubmissionError(f"too many tests: {total} (at most {MAX_TESTS} per submission)")
    return tuple(out)


def _interactor(value: object) -> Any:
    from ._programs import Interactor

    if value is None or isinstance(value, Interactor):
        return value
    raise SubmissionError(f"interactor must be an Interactor, got {type(value).__name__}")


def _generators(value: object) -> tuple[Any, ...]:
    from ._programs import Generator

    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise SubmissionError(f"generators must be a sequence of Generator, got {value!r:.80}")
    for item in value:
        if not isinstance(item, Generator):
            raise SubmissionError(f"generators must hold Generator objects, got {item!r:.80}")
    names = [g.name for g in value]
    if len(set(names)) != len(names):
        raise SubmissionError(f"two generators share a name: {sorted(names)}")
    return tuple(value)


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise SubmissionError(f"{what} must be True or False, got {value!r}")
    return value


def _language(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f"language must be a non-empty string, got {value!r}")
    return _utf8(value, "the language").strip().lower()


def _json_value(value: object, where: str, depth: int = 0) -> None:
    """Refuse what JSON would not give back as it is (metadata travels as JSON)."""
    if depth > 32:
        raise SubmissionError(f"metadata nests deeper than 32 levels at {where}")
    if isinstance(value, str):
        _utf8(value, f"metadata{where}")
        return
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SubmissionError(f"metadata{where}: {value!r} is not JSON")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _json_value(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SubmissionError(f"metadata{where}: key {key!r} is not a string")
            _utf8(key, f"a metadata key at {where or 'the top'}")
            _json_value(item, f"{where}[{key!r}]", depth + 1)
        return
    raise SubmissionError(
        f"metadata{where}: a value of type {type(value).__name__} is not JSON"
        " (metadata is stored and sent as JSON: use str, int, float, bool, None, list, dict)"
    )


def _metadata(value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SubmissionError(f"metadata must be a mapping, got {type(value).__name__}")
    _json_value(dict(value), "")
    try:
        text = json.dumps(dict(value), separators=(",", ":"))
    except ValueError as exc:  # an int of more digits than Python prints
        raise SubmissionError(f"metadata is not JSON: {exc}") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise SubmissionError(
            f"metadata takes {len(text.encode())} bytes as JSON; at most {MAX_METADATA_BYTES}"
        )
    # A copy as JSON gives it back (tuples become lists), so what was judged, what
    # is stored and what comes back are equal, and later changes to the caller's
    # objects change none of them.
    return json.loads(text)  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class Submission(_StrictKeywords):
    """What a host asks codeexec to run: a program in a language, and its tests.

    ``code`` is the main source file's content; ``files`` adds more files (or holds the
    main file itself when ``code`` is None). With no tests, one test with empty stdin
    and no expected output is run.

    Tests come as a flat list (``tests``: every test runs and scores its ``points``)
    or as ``groups`` (subtasks, see :class:`TestGroup`), never both.
    ``stop_on_failure=True`` ends judging at the first test that is not accepted
    (ICPC style): the tests after it are ``skipped``. ``metadata`` carries host keys (``user_id``,
    ``problem_id``, ...) and never affects execution or the fingerprint; it must be
    JSON (str keys; str, int, float, bool, None, list, dict values; at most 64 KiB),
    because it is stored and sent as JSON.

    Caps: at most :data:`MAX_TESTS` (4096) tests and :data:`MAX_FILES_BYTES` (32 MiB) of
    code and files together; a file path at most 32 levels and 1024 bytes.
    """

    language: str = attrs.field(converter=_language)
    code: bytes | None = attrs.field(default=None, converter=_code)
    files: tuple[File, ...] = attrs.field(default=(), converter=_files)
    tests: tuple[TestCase, ...] = attrs.field(default=(), converter=_tests)
    limits: Limits = attrs.field(default=None, converter=_limits)
    compile_limits: Limits = attrs.field(default=None, converter=_compile_limits)
    checker: Checker = attrs.field(default=None, converter=get_checker)
    metadata: Mapping[str, Any] = attrs.field(default=None, converter=_metadata, eq=False)
    groups: tuple[TestGroup, ...] = attrs.field(default=(), converter=_groups)
    stop_on_failure: bool = attrs.field(
        default=False, converter=lambda v: _bool(v, "stop_on_failure")
    )
    #: The other side of an interactive problem (see :class:`~codeexec.Interactor`).
    interactor: Any = attrs.field(default=None, converter=_interactor)
    #: Programs that write tests' input (see :class:`~codeexec.Generator`).
    generators: tuple[Any, ...] = attrs.field(default=(), converter=_generators)

    def __attrs_post_init__(self) -> None:
        if self.code is None and not self.files:
            raise SubmissionError("a submission needs code or files")
        if self.groups and self.tests:
            raise SubmissionError("give tests or groups, not both")
        names = {g.name for g in self.generators}
        for test in self.effective_tests:
            if test.generate is not None and test.generate[0] not in names:
                raise SubmissionError(
                    f"a test's generator {test.generate[0]!r} is not among the submission's"
                    f" generators ({', '.join(sorted(names)) or 'none'})"
                )
        if self.interactor is not None:
            from ._checkers import DefaultChecker
            from ._programs import CheckerProgram

            if not isinstance(self.checker, DefaultChecker | CheckerProgram):
                raise SubmissionError(
                    "with an interactor, the interactor judges: a checker may only be a"
                    " CheckerProgram (it reads the file the interactor wrote)"
                )
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
        """The tests to run, in order: the given ones (the groups' in turn), or a
        single empty-stdin test."""
        if self.groups:
            return tuple(t for g in self.groups for t in g.tests)
        return self.tests or (TestCase(),)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, and read back by :meth:`from_dict` byte for byte."""
        from ._programs import checker_to_json

        return {
            "format": DICT_FORMAT,
            "language": self.language,
            "code": None if self.code is None else bytes_to_json(self.code),
            "files": [f.to_dict() for f in self.files],
            "tests": [t.to_dict() for t in self.tests],
            "limits": self.limits.to_dict(),
            "compile_limits": self.compile_limits.to_dict(),
            "checker": checker_to_json(self.checker),
            "metadata": dict(self.metadata),
            "groups": [g.to_dict() for g in self.groups],
            "stop_on_failure": self.stop_on_failure,
            "interactor": None if self.interactor is None else self.interactor.to_dict(),
            "generators": [g.to_dict() for g in self.generators],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, recorded_checker: bool = False) -> Submission:
        """The submission ``to_dict`` gave.

        A callable checker's identity names code, not data: it cannot be rebuilt, so it
        raises :class:`SubmissionError`, unless ``recorded_checker`` is true: then the
        checker is a :class:`~codeexec.RecordedChecker` that keeps the identity (how
        the store gives back what it kept)."""
        from ._checkers import RecordedChecker
        from ._programs import Generator, Interactor, checker_from_json

        fields = read_fields(
            data,
            "submission",
            ("language",),
            (
                "format",
                "code",
                "files",
                "tests",
                "limits",
                "compile_limits",
                "checker",
                "metadata",
                "groups",
                "stop_on_failure",
                "interactor",
                "generators",
            ),
        )
        version = fields.get("format", 1)
        if version not in (1, DICT_FORMAT):
            raise FormatError(f"submission: format {version!r} is newer than this codeexec")
        legacy = version == 1
        code = fields.get("code")
        identity = fields.get("checker", "default")
        try:
            checker = checker_from_json(identity)
        except SubmissionError:
            if not recorded_checker or not isinstance(identity, str):
                raise
            checker = RecordedChecker(identity)
        limits = fields.get("limits")
        compile_limits = fields.get("compile_limits")
        interactor = fields.get("interactor")
        return cls(
            language=fields["language"],
            code=None if code is None else bytes_from_json(code, "code", legacy=legacy),
            files=[File.from_dict(f, legacy=legacy) for f in fields.get("files", ())],
            tests=[TestCase.from_dict(t, legacy=legacy) for t in fields.get("tests", ())],
            limits=None if limits is None else Limits.from_dict(limits),
            compile_limits=None if compile_limits is None else Limits.from_dict(compile_limits),
            checker=checker,
            metadata=fields.get("metadata"),
            groups=[TestGroup.from_dict(g, legacy=legacy) for g in fields.get("groups", ())],
            stop_on_failure=fields.get("stop_on_failure", False),
            interactor=None if interactor is None else Interactor.from_dict(interactor),
            generators=[Generator.from_dict(g) for g in fields.get("generators", ())],
        )


# ---------------------------------------------------------------------------- outputs


def _decode(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "replace")


_is_bool = attrs.validators.instance_of(bool)
_is_number = attrs.validators.instance_of((int, float))
_is_int = attrs.validators.instance_of(int)
_is_optional_int = attrs.validators.optional(_is_int)
_is_optional_str = attrs.validators.optional(attrs.validators.instance_of(str))
_is_str = attrs.validators.instance_of(str)
_is_mapping = attrs.validators.instance_of(Mapping)  # type: ignore[type-abstract]


@attrs.frozen(kw_only=True)
class Measured:
    """What a sandbox measured of one program run (a test's or the compiler's).

    Output is decoded as UTF-8, invalid bytes replaced; times in seconds, memory in
    bytes (the peak of all the run's processes together).
    """

    exit_code: int | None = attrs.field(default=None, validator=_is_optional_int)
    signal: int | None = attrs.field(default=None, validator=_is_optional_int)
    cpu_time: float = attrs.field(default=0.0, validator=_is_number)
    wall_time: float = attrs.field(default=0.0, validator=_is_number)
    memory_peak: int = attrs.field(default=0, validator=_is_int)
    stdout: str = attrs.field(default="", converter=_decode)
    stderr: str = attrs.field(default="", converter=_decode)


@attrs.frozen(kw_only=True)
class TestResult(Measured):
    """The outcome of one test."""

    __test__ = False

    name: str | None = attrs.field(default=None, validator=_is_optional_str)
    verdict: Verdict = attrs.field(converter=Verdict)
    stdout_truncated: bool = attrs.field(default=False, validator=_is_bool)
    stderr_truncated: bool = attrs.field(default=False, validator=_is_bool)
    #: ``"cpu"`` or ``"wall"`` when the verdict is a time limit, else None.
    time_limit: str | None = attrs.field(default=None, validator=_is_optional_str)
    #: Why the verdict: a checker's reason, the signal's name, the sandbox failure.
    message: str = attrs.field(default="", validator=_is_str)
    #: The points the test earned of its ``worth`` (1 unless the test has ``points``):
    #: a ``"min"`` group scores its own points times the smallest share of them.
    points: float = attrs.field(default=0.0, validator=_is_number)
    #: The name of the test's group, if it has one.
    group: str | None = attrs.field(default=None, validator=_is_optional_str)
    #: What the checker program or the interactor wrote on its stderr (its log).
    judge_log: str = attrs.field(default="", converter=_decode)

    def to_dict(self) -> dict[str, Any]:
        return _with_verdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TestResult:
        """The test result ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        return _from_fields(
            cls,
            read_fields(
                data,
                "test result",
                ("verdict",),  # type: ignore[no-any-return]
                _field_names(cls),
            ),
            "test result",
        )


@attrs.frozen(kw_only=True)
class CompileResult(Measured):
    """The outcome of the compile step; ``ok`` False gives ``compilation_error``."""

    ok: bool = attrs.field(validator=_is_bool)
    #: The artifact came from an earlier compile of the same source.
    cached: bool = attrs.field(default=False, validator=_is_bool)
    message: str = attrs.field(default="", validator=_is_str)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompileResult:
        """The compile result ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        return _from_fields(
            cls,
            read_fields(
                data,
                "compile result",
                ("ok",),  # type: ignore[no-any-return]
                _field_names(cls),
            ),
            "compile result",
        )


def _with_verdict(result: Any) -> dict[str, Any]:
    """A result's fields as JSON-ready data (its verdict as its value)."""
    data = attrs.asdict(result)
    data["verdict"] = result.verdict.value
    return data


def _test_results(value: Iterable[TestResult]) -> tuple[TestResult, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class GroupResult:
    """How one :class:`TestGroup` did: its verdict (its first test not accepted, or
    ``skipped`` when a group it depends on failed) and the points it scored."""

    name: str = attrs.field(validator=_is_str)
    verdict: Verdict = attrs.field(converter=Verdict)
    score: float = attrs.field(validator=_is_number)
    max_score: float = attrs.field(validator=_is_number)
    message: str = attrs.field(default="", validator=_is_str)

    def to_dict(self) -> dict[str, Any]:
        return _with_verdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroupResult:
        """The group result ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        fields = read_fields(data, "group result", ("name", "verdict"), _field_names(cls))
        return _from_fields(cls, fields, "group result")  # type: ignore[no-any-return]


def _group_results(value: Iterable[GroupResult]) -> tuple[GroupResult, ...]:
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
    compile: CompileResult | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(CompileResult)),
    )
    cached: bool = attrs.field(default=False, validator=_is_bool)
    fingerprint: str = attrs.field(default="", validator=_is_str)
    backend: str = attrs.field(default="", validator=_is_str)
    queue_time: float = attrs.field(default=0.0, validator=_is_number)
    total_time: float = attrs.field(default=0.0, validator=_is_number)
    reproducibility: Mapping[str, Any] = attrs.field(factory=dict, validator=_is_mapping)
    metadata: Mapping[str, Any] = attrs.field(factory=dict, eq=False, validator=_is_mapping)
    #: Points scored and the most there were: the tests' (a flat list) or the
    #: groups' (see :class:`TestGroup`). 0 of the whole when it did not compile.
    score: float = attrs.field(default=0.0, validator=_is_number)
    max_score: float = attrs.field(default=0.0, validator=_is_number)
    groups: tuple[GroupResult, ...] = attrs.field(default=(), converter=_group_results)

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
            "score": self.score,
            "max_score": self.max_score,
            "groups": [g.to_dict() for g in self.groups],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        """The result ``to_dict`` gave (:class:`~codeexec.FormatError` if not)."""
        fields = dict(read_fields(data, "result", ("verdict",), _field_names(cls)))
        tests = fields.get("tests", ())
        groups = fields.get("groups", ())
        compile_data = fields.get("compile")
        for name, value in (("tests", tests), ("groups", groups)):
            if not isinstance(value, list | tuple):
                raise FormatError(f"result: {name} must be a list, got {type(value).__name__}")
        return _from_fields(  # type: ignore[no-any-return]
            cls,
            fields,
            "result",
            tests=tuple(TestResult.from_dict(t) for t in tests),
            groups=tuple(GroupResult.from_dict(g) for g in groups),
            compile=None if compile_data is None else CompileResult.from_dict(compile_data),
        )


def _field_names(cls: Any) -> list[str]:
    return [field.name for field in attrs.fields(cls)]


def cpu_count() -> int:
    """Cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
