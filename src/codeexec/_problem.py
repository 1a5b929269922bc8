"""Problems as files: a TOML document with the tests (or groups), limits, checker,
interactor and settings a submission to that problem is judged with.

::

    id = "guess"                      # the stored submissions' problem_id (optional)
    limits = { cpu_time = 1, memory = "256M" }
    checker = "tokens"                # a built-in's name, or a [checker] table:
    stop_on_failure = false

    [checker]                         # a checker program (testlib conventions)
    language = "cpp"
    source = "check.cpp"              # paths are relative to this file
    files = ["testlib.h"]
    limits = { cpu_time = 5 }

    [interactor]                      # the same keys as [checker]
    language = "cpp"
    source = "interactor.cpp"

    [[generators]]                    # tests may say generate = ["gen", "10", "7"]
    name = "gen"
    language = "python"
    source = "gen.py"

    [[groups]]                        # or [[tests]] for a flat list
    name = "small"
    points = 30
    depends_on = []
    scoring = "min"
    tests = [
        { stdin = "1 2", expected = "3" },
        { input_file = "tests/01.in", answer_file = "tests/01.ans", points = 2 },
    ]

Any key not listed here is a :class:`~codeexec.FormatError` naming it (a misspelt key
would otherwise judge something else than meant).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ._checkers import Checker, get_checker
from ._errors import CodeExecError, FormatError
from ._model import File, Limits, Submission, TestCase, TestGroup, read_fields
from ._programs import CheckerProgram, Generator, Interactor, Program

__all__ = ["Problem", "load_problem"]

_PROGRAM_KEYS = ("source", "files", "limits", "compile_limits")
_TEST_KEYS = (
    "stdin",
    "input",
    "input_file",
    "expected",
    "output",
    "answer",
    "answer_file",
    "args",
    "name",
    "points",
    "limits",
    "generate",
)


@attrs.frozen(kw_only=True)
class Problem:
    """What a problem file says: everything but the submission's own code."""

    id: str | None = None
    tests: tuple[TestCase, ...] = ()
    groups: tuple[TestGroup, ...] = ()
    limits: Limits = attrs.field(factory=Limits)
    checker: Checker | None = None
    interactor: Interactor | None = None
    generators: tuple[Generator, ...] = ()
    stop_on_failure: bool = False

    def submission(
        self,
        language: str,
        code: bytes | str,
        *,
        limits: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Submission:
        """A submission of ``code`` to this problem; ``limits`` override the
        problem's, field by field."""
        merged = attrs.evolve(self.limits, **dict(limits or {}))
        meta = dict(metadata or {})
        if self.id is not None:
            meta.setdefault("problem_id", self.id)
        return Submission(
            language=language,
            code=code,
            tests=self.tests,
            groups=self.groups,
            limits=merged,
            checker=self.checker,
            interactor=self.interactor,
            generators=self.generators,
            stop_on_failure=self.stop_on_failure,
            metadata=meta,
        )


def load_problem(path: str | Path) -> Problem:
    """Read a problem file (see the module doc); :class:`~codeexec.FormatError` names
    the file and what is wrong with it."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FormatError(f"{path}: cannot read it: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path}: not TOML: {exc}") from None
    try:
        return _problem(data, path.parent)
    except FormatError as exc:
        raise FormatError(f"{path}: {exc}") from None
    except CodeExecError as exc:  # a bad limit, a bad group: still the file's fault
        raise FormatError(f"{path}: {exc}") from None


def _problem(data: Mapping[str, Any], base: Path) -> Problem:
    fields = read_fields(
        data,
        "problem",
        optional=(
            "id",
            "tests",
            "groups",
            "limits",
            "checker",
            "interactor",
            "generators",
            "stop_on_failure",
        ),
    )
    if "tests" in fields and "groups" in fields:
        raise FormatError("give tests or groups, not both")
    checker = fields.get("checker")
    if isinstance(checker, Mapping):
        checker = _program(CheckerProgram, checker, base, "checker")
    interactor = fields.get("interactor")
    if interactor is not None:
        interactor = _program(Interactor, _table(interactor, "interactor"), base, "interactor")
    problem_id = fields.get("id")
    if problem_id is not None and not isinstance(problem_id, str):
        raise FormatError(f"id must be a string, got {problem_id!r}")
    return Problem(
        id=problem_id,
        tests=tuple(_tests(fields.get("tests", []), base, "tests")),
        groups=tuple(
            _group(g, base, i) for i, g in enumerate(_list(fields.get("groups", []), "groups"))
        ),
        limits=Limits.coerce(fields.get("limits")),
        checker=None if checker is None else get_checker(checker),
        interactor=interactor,
        generators=tuple(
            _program(Generator, _table(g, f"generators[{i}]"), base, f"generators[{i}]")
            for i, g in enumerate(_list(fields.get("generators", []), "generators"))
        ),
        stop_on_failure=fields.get("stop_on_failure", False),
    )


def _table(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FormatError(f"{what} must be a table, got {value!r:.80}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise FormatError(f"{what} must be a list, got {value!r:.80}")
    return value


def _read(base: Path, name: object, what: str) -> bytes:
    if not isinstance(name, str):
        raise FormatError(f"{what} must be a path, got {name!r:.80}")
    try:
        return (base / name).read_bytes()
    except OSError as exc:
        raise FormatError(f"{what}: cannot read {name}: {exc.strerror}") from None


def _program(kind: type[Program], data: Mapping[str, Any], base: Path, what: str) -> Any:
    own = kind._own_fields
    fields = dict(read_fields(data, what, ("language", "source", *own), _PROGRAM_KEYS))
    files = [
        File(Path(name).name, _read(base, name, f"{what} file"))
        for name in _list(fields.pop("files", []), f"{what} files")
    ]
    code = _read(base, fields.pop("source"), f"{what} source")
    return kind(code=code, files=files, **fields)


def _tests(items: object, base: Path, what: str) -> list[TestCase]:
    tests = []
    for i, item in enumerate(_list(items, what)):
        where = f"{what}[{i}]"
        fields = dict(read_fields(_table(item, where), where, optional=_TEST_KEYS))
        from_files: dict[str, bytes] = {}
        for key, target in (("input_file", "stdin"), ("answer_file", "expected")):
            if key in fields:
                given = [k for k in fields if k != key and _same(k, target)]
                if given:
                    raise FormatError(f"{where}: {key} and {given[0]} both give the {target}")
                from_files[target] = _read(base, fields.pop(key), f"{where} {key}")
        try:
            tests.append(attrs.evolve(TestCase.from_dict(fields), **from_files))
        except CodeExecError as exc:
            raise FormatError(f"{where}: {exc}") from None
    return tests


def _same(key: str, target: str) -> bool:
    """Whether a test key gives ``target`` (stdin or expected) too."""
    if target == "stdin":
        return key in ("stdin", "input")
    return key in ("expected", "output", "answer")


def _group(data: object, base: Path, index: int) -> TestGroup:
    where = f"groups[{index}]"
    fields = dict(
        read_fields(
            _table(data, where), where, ("name", "tests"), ("points", "depends_on", "scoring")
        )
    )
    fields["tests"] = _tests(fields["tests"], base, f"{where}.tests")
    return TestGroup(**fields)
