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

import collections
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
        self._names: set[str] = set()  # every name any code walked uses
        self._modules: dict[str, types.ModuleType] = {}

    def add(self, tag: str, data: bytes | str = b"") -> None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        self.hash.update(f"{tag}{len(raw)}:".encode())
        self.hash.update(raw)

    def value(self, value: object, globals_: Mapping[str, Any] | None) -> None:
        self._items += 1
        if self._items > self._MAX_ITEMS:
            raise _Unkeyable("more values than a key walks")
        # Exact types only: a subclass (of dict, of int, ...) may behave otherwise.
        kind = type(value)
        if kind in _SCALARS or value is Ellipsis:
            self.add("c", _scalar(value))
        elif self._revisit(value):
            return
        elif (text := _plain_text(value)) is not None:
            # Plain data (answer tables: containers of scalars, nested a few levels):
            # its text says it all, and is many times faster to hash than a walk.
            self._items += len(text) // 8
            self.add("plain", text)
        elif kind is tuple or kind is list:
            self.add(kind.__name__, str(len(value)))  # type: ignore[arg-type]
            for item in value:  # type: ignore[attr-defined]
                self.value(item, globals_)
        elif kind is set or kind is frozenset:
            self.add(kind.__name__, str(len(value)))  # type: ignore[arg-type]
            for digest in sorted(self._digest(item, globals_) for item in value):  # type: ignore[attr-defined]
                self.add("s", digest)
        elif kind is dict or kind is collections.defaultdict:
            if kind is collections.defaultdict:
                self.add("defaultdict")  # its factory answers missing keys
                self.value(value.default_factory, globals_)  # type: ignore[attr-defined]
            self.add("D", str(len(value)))  # type: ignore[arg-type]
            items = sorted(
                ((self._digest(k, globals_), v) for k, v in value.items()),  # type: ignore[attr-defined]
                key=lambda pair: pair[0],
            )
            for digest, item in items:
                self.add("k", digest)
                self.value(item, globals_)
        elif kind is range or kind is slice:
            self.add(kind.__name__, repr(value))
        elif kind is types.CodeType:
            self.code(value, globals_)  # type: ignore[arg-type]
        elif kind is types.FunctionType and _stable(value):  # type: ignore[arg-type]
            # A standard-library function (from json import loads): its code does not
            # change while a process runs.
            self.add("named", f"{_module_of(value)}.{value.__qualname__}")  # type: ignore[attr-defined]
        elif kind is types.FunctionType:
            self.function(value)  # type: ignore[arg-type]
        elif kind is types.MethodType:  # a bound method: its function and its object
            self.add("method")
            self.value(value.__func__, globals_)  # type: ignore[attr-defined]
            self.value(value.__self__, globals_)  # type: ignore[attr-defined]
        elif kind is functools.partial:
            self.add("partial")
            self.value(value.func, globals_)  # type: ignore[attr-defined]
            self.value(value.args, globals_)  # type: ignore[attr-defined]
            self.value(value.keywords, globals_)  # type: ignore[attr-defined]
        elif kind is re.Pattern:
            self.add("re", f"{value.flags}:{value.pattern!r}")  # type: ignore[attr-defined]
        elif kind is types.ModuleType:
            # Its attributes the code names are walked at the end (see finish()).
            self.add("module", value.__name__)  # type: ignore[attr-defined]
            self._modules[value.__name__] = value  # type: ignore[attr-defined,assignment]
        elif kind is types.BuiltinFunctionType:
            owner = value.__self__  # type: ignore[attr-defined]
            if owner is None or isinstance(owner, types.ModuleType):
                if not _stable(value):  # type: ignore[arg-type]
                    raise _Unkeyable(f"a builtin of {value.__module__!r}")  # type: ignore[attr-defined]
                self.add("named", f"{_module_of(value)}.{value.__qualname__}")  # type: ignore[attr-defined]
            else:  # a method bound to an object (answers.get, pattern.fullmatch)
                self.add("bound", value.__qualname__)  # type: ignore[attr-defined]
                self.value(owner, globals_)
        elif isinstance(value, type):
            if not _stable(value):
                raise _Unkeyable(f"the class {value.__qualname__}")
            self.add("named", f"{value.__module__}.{value.__qualname__}")
        elif isinstance(value, Checker) and is_cacheable(value):
            self.add("checker", value.identity)  # a checker used inside another one
        else:
            raise _Unkeyable(f"a {kind.__qualname__} object")

    def finish(self) -> str:
        """Walk the attributes of every module reached that some code names (until no
        new module turns up), then give the digest."""
        done: set[str] = set()
        while pending := sorted(set(self._modules) - done):
            for module_name in pending:
                done.add(module_name)
                module = self._modules[module_name]
                stable = module_name.split(".")[0] in _STABLE_MODULES
                namespace = vars(module)
                for name in sorted(self._names & namespace.keys()):
                    attribute = namespace[name]
                    self.add("attr", f"{module_name}.{name}")
                    if stable and (callable(attribute) or isinstance(attribute, types.ModuleType)):
                        # Standard-library code does not change while a process runs;
                        # its data (os.environ, ...) can, and is walked.
                        if isinstance(attribute, types.ModuleType):
                            self.value(attribute, None)
                        else:
                            qualname = getattr(attribute, "__qualname__", name)
                            self.add("named", f"{module_name}.{qualname}")
                    else:
                        self.value(attribute, getattr(module, "__dict__", None))
        return self.hash.hexdigest()

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
        inner._names, inner._modules = self._names, self._modules  # shared: see finish()
        inner.value(value, globals_)
        self._items = inner._items
        return inner.hash.hexdigest()

    def function(self, fn: types.FunctionType) -> None:
        self.add("fn", f"{fn.__module__}.{fn.__qualname__}")
        self.code(fn.__code__, fn.__globals__)
        self.value(fn.__defaults__, None)
        self.value(fn.__kwdefaults__, None)
        if fn.__dict__:  # function attributes (check.tolerance = ...)
            self.add("attributes")
            self.value(dict(fn.__dict__), fn.__globals__)
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
        self._names.update(code.co_names)
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


_SCALARS = (str, int, float, complex, bytes, bool, type(None))


def _scalar(value: object) -> str:
    """One scalar as text, type included (1, 1.0 and True are other keys). Ints in hex:
    their decimal repr is refused above 4300 digits."""
    if type(value) is int:
        return f"int:{value:x}"
    return f"{type(value).__name__}:{value!r}"


def _plain_text(value: Any, depth: int = 0) -> str | None:
    """Text that identifies plain data: scalars, and lists, tuples, sets and dicts of
    plain data up to 4 levels deep (exact types only); None for anything else. Another
    order of a list or dict is another text (only a miss); sets are sorted, so their
    text is the same in every process."""
    kind = type(value)
    if kind in _SCALARS:
        return _scalar(value)
    if depth >= 4 or kind not in (list, tuple, set, frozenset, dict):
        return None
    items = value.items() if kind is dict else ((item, None) for item in value)
    parts = []
    for key, item in items:
        key_text = _plain_text(key, depth + 1)
        if key_text is None:
            return None
        if kind is dict:
            item_text = _plain_text(item, depth + 1)
            if item_text is None:
                return None
            key_text += "=" + item_text
        parts.append(key_text)
    if kind is set or kind is frozenset:
        parts.sort()
    return f"{kind.__name__}[{','.join(parts)}]"


def _module_of(value: Any) -> str:
    """The module ``value`` belongs to ("" when it does not say: never stable)."""
    owner = getattr(value, "__self__", None)
    if isinstance(owner, types.ModuleType):
        return owner.__name__
    return getattr(value, "__module__", None) or ""


def _stable(value: Any) -> bool:
    """Whether ``value`` (a class or function) is the standard library's or a builtin:
    its code does not change while a process runs."""
    return _module_of(value).split(".")[0] in _STABLE_MODULES


def callable_key(fn: object) -> str | None:
    """A digest of everything that can change what ``fn`` returns, or None when that
    cannot be known (see :class:`_KeyBuilder` for what is covered)."""
    builder = _KeyBuilder()
    try:
        builder.value(fn, None)
        return builder.finish()
    except (_Unkeyable, RecursionError, ValueError, TypeError, AttributeError):
        # Whatever the walk cannot read, it cannot vouch for: not cached.
        return None


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
