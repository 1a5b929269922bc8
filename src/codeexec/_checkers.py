"""Checkers: decide whether a program's output answers a test.

A checker compares raw bytes (before any decoding) and returns a :class:`Check`.
Each checker has an ``identity``: a stable string that goes into the fingerprint, so
changing the tolerance of a float checker changes the cache key.

Built in, by name:

- ``"exact"``    byte for byte.
- ``"default"``  ignores trailing whitespace on each line and trailing blank lines
                 (what most judges call "lines").
- ``"tokens"``   whitespace-separated tokens must match.
- ``"float"``    tokens; numeric ones compared with absolute/relative tolerance.

Any callable ``fn(output: str, expected: str, test) -> bool | (bool, str)`` becomes a
:class:`CallableChecker`, whose identity covers its code and the data it can see (or
which is not cached at all when that cannot be known).

A checker of your own implements :class:`Checker`: its ``identity`` must change
whenever its behaviour does; give it ``cacheable = False`` if no string can say that.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import sys
import types
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._errors import SubmissionError

if TYPE_CHECKING:
    from ._model import TestCase

__all__ = [
    "CallableChecker",
    "Check",
    "Checker",
    "DefaultChecker",
    "ExactChecker",
    "FloatChecker",
    "RecordedChecker",
    "TokenChecker",
    "checker_from_identity",
    "callable_key",
    "describe",
    "get_checker",
    "is_cacheable",
]


@attrs.frozen
class Check:
    """The checker's answer: ``ok`` and, when not ok, a short human-readable reason."""

    ok: bool
    message: str = ""


@runtime_checkable
class Checker(Protocol):
    """Anything with a stable ``identity`` and a ``check`` method."""

    @property
    def identity(self) -> str: ...

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check: ...


def _first_difference(a: list[Any], b: list[Any], what: str) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"{what} {i + 1} differs: expected {_short(y)}, got {_short(x)}"
    return f"expected {len(b)} {what}s, got {len(a)}"


def _short(value: Any, limit: int = 40) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return repr(text if len(text) <= limit else text[:limit] + "…")


@attrs.frozen
class ExactChecker:
    """Byte-for-byte equality."""

    name = "exact"

    @property
    def identity(self) -> str:
        return "exact"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        if output == expected:
            return Check(True)
        return Check(False, _first_difference(output.split(b"\n"), expected.split(b"\n"), "line"))


def _lines(data: bytes) -> list[bytes]:
    lines = [line.rstrip() for line in data.split(b"\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@attrs.frozen
class DefaultChecker:
    """Lines must match, ignoring trailing whitespace and trailing blank lines."""

    name = "default"

    @property
    def identity(self) -> str:
        return "default"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        got, want = _lines(output), _lines(expected)
        if got == want:
            return Check(True)
        return Check(False, _first_difference(got, want, "line"))


@attrs.frozen
class TokenChecker:
    """Whitespace-separated tokens must match; layout is free."""

    name = "tokens"

    @property
    def identity(self) -> str:
        return "tokens"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        got, want = output.split(), expected.split()
        if got == want:
            return Check(True)
        return Check(False, _first_difference(got, want, "token"))


def _non_negative(instance: Any, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise SubmissionError(f"{attribute.name} must be a non-negative number, got {value!r}")


@attrs.frozen
class FloatChecker:
    """Tokens must match; tokens that both parse as numbers match within tolerance.

    A number matches when ``|got - want| <= abs_tol`` or
    ``|got - want| <= rel_tol * |want|`` (the usual judge rule).
    """

    abs_tol: float = attrs.field(default=1e-6, validator=_non_negative)
    rel_tol: float = attrs.field(default=1e-6, validator=_non_negative)
    name = "float"

    @property
    def identity(self) -> str:
        return f"float:abs={self.abs_tol!r}:rel={self.rel_tol!r}"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        got, want = output.split(), expected.split()
        if len(got) != len(want):
            return Check(False, f"expected {len(want)} tokens, got {len(got)}")
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if g == w:
                continue
            try:
                gv, wv = float(g), float(w)
            except ValueError:
                return Check(False, f"token {i + 1} differs: expected {_short(w)}, got {_short(g)}")
            if math.isnan(gv) or math.isnan(wv):
                return Check(False, f"token {i + 1}: NaN is never equal")
            diff = abs(gv - wv)
            if diff > self.abs_tol and diff > self.rel_tol * abs(wv):
                return Check(False, f"token {i + 1}: expected {w.decode()}, got {g.decode()}")
        return Check(True)


#: Modules whose classes and functions are identified by name: they do not change while
#: a process runs (the standard library and the builtins).
_STABLE_MODULES = frozenset(sys.stdlib_module_names) | {"builtins"}


class _Unkeyable(Exception):
    """Raised inside :func:`callable_key` when a value's behaviour cannot be known."""


class _KeyBuilder:
    """Turns a function and everything it can see into one canonical byte string.

    Covered: the bytecode and constants of the function and of every function nested in
    it, its defaults, its closure cells' contents, the module globals its code names
    (data by value, functions recursively, modules and standard-library classes by
    name), and ``functools.partial`` arguments. Anything else (an arbitrary object, a
    class of your own, a bound method) has state that cannot be read reliably:
    :class:`_Unkeyable`.
    """

    _MAX_ITEMS = 1_000_000  # values walked at most, so a huge closure cannot stall a key

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self._seen: dict[int, int] = {}  # id of a function or container -> its index
        self._keep: list[object] = []  # keeps seen objects alive (ids stay unique)
        self._items = 0

    def add(self, tag: str, data: bytes | str = b"") -> None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        self.hash.update(f"{tag}{len(raw)}:".encode())
        self.hash.update(raw)

    def value(self, value: object, globals_: Mapping[str, Any] | None) -> None:
        self._items += 1
        if self._items > self._MAX_ITEMS:
            raise _Unkeyable("more values than a key walks")
        if value is None or value is Ellipsis or isinstance(value, bool):
            self.add("c", repr(value))
        elif type(value) in (int, float, complex, str, bytes):
            self.add(type(value).__name__[0], value if type(value) is bytes else repr(value))
        elif self._revisit(value):
            return
        elif _flat(value):
            # Containers of plain scalars (answer tables): their repr says it all, and
            # is ~50x faster to hash than a walk. Another order is another key (only
            # a miss). Sets are not here: their order varies between processes.
            self._items += len(value)  # type: ignore[arg-type]
            self.add(f"flat-{type(value).__name__}", repr(value))
        elif isinstance(value, tuple | list):
            self.add("T" if isinstance(value, tuple) else "L", str(len(value)))
            for item in value:
                self.value(item, globals_)
        elif isinstance(value, set | frozenset):
            self.add("S", str(len(value)))
            for digest in sorted(self._digest(item, globals_) for item in value):
                self.add("s", digest)
        elif isinstance(value, dict):
            self.add("D", str(len(value)))
            items = sorted(
                ((self._digest(k, globals_), v) for k, v in value.items()), key=lambda pair: pair[0]
            )
            for digest, item in items:
                self.add("k", digest)
                self.value(item, globals_)
        elif isinstance(value, range | slice):
            self.add(type(value).__name__, repr(value))
        elif isinstance(value, types.CodeType):
            self.code(value, globals_)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        elif isinstance(value, functools.partial):
            self.add("partial")
            self.value(value.func, globals_)
            self.value(value.args, globals_)
            self.value(value.keywords, globals_)
        elif isinstance(value, re.Pattern):
            self.add("re", f"{value.flags}:{value.pattern!r}")
        elif isinstance(value, types.ModuleType):
            self.add("module", value.__name__)
        elif isinstance(value, type | types.BuiltinFunctionType) and _stable(value):
            self.add("named", f"{value.__module__}.{value.__qualname__}")
        elif isinstance(value, Checker) and is_cacheable(value):
            self.add("checker", value.identity)  # a checker used inside another one
        else:
            raise _Unkeyable(f"a {type(value).__qualname__} object")

    def _revisit(self, value: object) -> bool:
        """True (and a back-reference added) when ``value`` was walked already: shared
        and self-referencing functions and containers are walked once."""
        index = self._seen.get(id(value))
        if index is not None:
            self.add("ref", str(index))
            return True
        self._seen[id(value)] = len(self._seen)
        self._keep.append(value)
        return False

    def _digest(self, value: object, globals_: Mapping[str, Any] | None) -> str:
        inner = _KeyBuilder()
        inner._items = self._items
        inner.value(value, globals_)
        self._items = inner._items
        return inner.hash.hexdigest()

    def function(self, fn: types.FunctionType) -> None:
        self.add("fn", f"{fn.__module__}.{fn.__qualname__}")
        self.code(fn.__code__, fn.__globals__)
        self.value(fn.__defaults__, None)
        self.value(fn.__kwdefaults__, None)
        cells = fn.__closure__ or ()
        self.add("closure", str(len(cells)))
        for cell in cells:
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                self.add("empty")
                continue
            self.value(content, fn.__globals__)

    def code(self, code: types.CodeType, globals_: Mapping[str, Any] | None) -> None:
        self.add("code", code.co_code)
        for part in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
            self.add("names", "\0".join(part))
        self.add("flags", f"{code.co_flags}:{code.co_argcount}:{code.co_kwonlyargcount}")
        self.value(code.co_consts, globals_)
        if globals_ is None:
            return
        # The module globals the code names (attribute names land in co_names too;
        # including a global that is only an attribute's namesake is merely cautious).
        for name in code.co_names:
            if name in globals_:
                self.add("global", name)
                self.value(globals_[name], globals_)


_SCALARS = (str, int, float, bytes, bool, type(None))


def _flat(value: object) -> bool:
    """A list, tuple or dict whose items (and keys) are all plain scalars."""
    kind = type(value)
    if kind is dict:
        items = value.values()  # type: ignore[attr-defined]
        keys = value.keys()  # type: ignore[attr-defined]
        return all(type(k) in _SCALARS for k in keys) and all(type(v) in _SCALARS for v in items)
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS for item in value)  # type: ignore[attr-defined]
    return False


def _stable(value: type | types.BuiltinFunctionType) -> bool:
    module = getattr(value, "__module__", None) or "builtins"
    return module.split(".")[0] in _STABLE_MODULES


def callable_key(fn: object) -> str | None:
    """A digest of everything that can change what ``fn`` returns, or None when that
    cannot be known (see :class:`_KeyBuilder` for what is covered)."""
    builder = _KeyBuilder()
    try:
        builder.value(fn, None)
    except (_Unkeyable, RecursionError):
        return None
    return builder.hash.hexdigest()


@attrs.frozen
class CallableChecker:
    """Wrap ``fn(output: str, expected: str, test) -> bool | tuple[bool, str]``.

    Output and expected are decoded as UTF-8 (invalid bytes replaced).

    The identity (part of the result cache's key) is a digest of everything that can
    change the function's answers: its bytecode and constants, its defaults, the
    contents of its closure and the module globals it uses, recursively. So two
    lambdas from one factory (``make(3)``, ``make(4)``) never share cached results.
    When the function can see something whose behaviour cannot be read (an object or
    a class of your own, a bound method), the checker is not ``cacheable``: results
    judged with it are never taken from or put in the cache. Pass ``identity=`` to
    name the checker's behaviour yourself (change it whenever the behaviour changes):
    it is then cached under that name.
    """

    fn: Callable[..., Any]
    _identity: str | None = attrs.field(default=None, alias="identity")
    #: Distinguishes unkeyable checkers in fingerprints (never cached anyway).
    _instance: str = attrs.field(factory=lambda: uuid.uuid4().hex, init=False, eq=False)
    name = "callable"

    @property
    def _label(self) -> str:
        qualname = getattr(self.fn, "__qualname__", type(self.fn).__qualname__)
        return f"callable:{getattr(self.fn, '__module__', '?')}.{qualname}"

    @property
    def identity(self) -> str:
        return self.describe()[0]

    @property
    def cacheable(self) -> bool:
        """Whether the identity covers the checker's behaviour (see the class doc)."""
        return self.describe()[1]

    def describe(self) -> tuple[str, bool]:
        """``(identity, cacheable)`` from one walk of the function (the walk reads what
        the function sees now, so it is done once per submission, not once per use)."""
        if self._identity is not None:
            return self._identity, True
        key = callable_key(self.fn)
        if key is None:
            return f"{self._label}:unkeyed:{self._instance}", False
        return f"{self._label}:{key[:32]}", True

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        answer = self.fn(
            output.decode("utf-8", "replace"), expected.decode("utf-8", "replace"), test
        )
        if isinstance(answer, tuple):
            ok, message = answer
            return Check(bool(ok), str(message))
        return Check(bool(answer), "" if answer else "rejected by checker")


@attrs.frozen
class RecordedChecker:
    """A checker known only by the identity it had when its submission was stored or
    sent (a callable's code cannot travel as data). It keeps that record and cannot
    judge: its ``check`` raises, which judging reports as an ``internal_error``. To
    judge such a submission again, give it a checker: ``attrs.evolve(sub, checker=fn)``.
    """

    identity: str
    name = "recorded"
    cacheable = False

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        raise SubmissionError(
            f"the checker {self.identity!r} was recorded by its identity only and cannot"
            " judge; give the submission its checker again"
        )


def is_cacheable(checker: Checker) -> bool:
    """Whether results judged by ``checker`` may be cached: its ``cacheable`` attribute
    when it has one (a checker of your own may say False), else True."""
    return bool(getattr(checker, "cacheable", True))


def describe(checker: Checker) -> tuple[str, bool]:
    """``(identity, cacheable)`` of any checker, each worked out once."""
    if isinstance(checker, CallableChecker):
        return checker.describe()
    return checker.identity, is_cacheable(checker)


_BY_NAME: dict[str, Callable[[], Checker]] = {
    "exact": ExactChecker,
    "default": DefaultChecker,
    "lines": DefaultChecker,
    "tokens": TokenChecker,
    "float": FloatChecker,
}


def get_checker(spec: object) -> Checker:
    """Turn a name, a callable or a checker object into a :class:`Checker`."""
    if spec is None:
        return DefaultChecker()
    if isinstance(spec, str):
        try:
            return _BY_NAME[spec]()
        except KeyError:
            raise SubmissionError(
                f"unknown checker {spec!r}; available: {', '.join(sorted(_BY_NAME))} or a callable"
            ) from None
    if isinstance(spec, Checker):
        return spec
    if callable(spec):
        return CallableChecker(spec)
    raise SubmissionError(f"checker must be a name, a Checker or a callable, got {spec!r}")


def checker_from_identity(identity: str) -> Checker:
    """The built-in checker an ``identity`` names (how a submission travels as data).

    A callable checker's identity names code, not data: it cannot be rebuilt elsewhere,
    so it raises :class:`SubmissionError`.
    """
    if identity in _BY_NAME:
        return _BY_NAME[identity]()
    if identity.startswith("float:"):
        try:
            fields = dict(part.split("=", 1) for part in identity.split(":")[1:])
            return FloatChecker(abs_tol=float(fields["abs"]), rel_tol=float(fields["rel"]))
        except (KeyError, ValueError) as exc:
            raise SubmissionError(f"not a float checker's identity: {identity!r}") from exc
    if identity.startswith("callable:"):
        raise SubmissionError(
            "a callable checker cannot be sent as data (to a queue or another machine);"
            " use a built-in checker there"
        )
    raise SubmissionError(f"unknown checker identity {identity!r}")
