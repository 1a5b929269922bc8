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
:class:`CallableChecker`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
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
    "TokenChecker",
    "checker_from_identity",
    "get_checker",
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


@attrs.frozen
class CallableChecker:
    """Wrap ``fn(output: str, expected: str, test) -> bool | tuple[bool, str]``.

    Output and expected are decoded as UTF-8 (invalid bytes replaced). The identity is
    the function's qualified name plus a digest of its bytecode, so editing the function
    changes the fingerprint. Pass ``identity=`` to pin it yourself.
    """

    fn: Callable[..., Any]
    _identity: str | None = attrs.field(default=None, alias="identity")
    name = "callable"

    @property
    def identity(self) -> str:
        if self._identity is not None:
            return self._identity
        code = getattr(self.fn, "__code__", None)
        digest = hashlib.sha256(code.co_code if code is not None else b"").hexdigest()[:16]
        qualname = getattr(self.fn, "__qualname__", type(self.fn).__qualname__)
        return f"callable:{getattr(self.fn, '__module__', '?')}.{qualname}:{digest}"

    def check(self, output: bytes, expected: bytes, test: TestCase) -> Check:
        answer = self.fn(
            output.decode("utf-8", "replace"), expected.decode("utf-8", "replace"), test
        )
        if isinstance(answer, tuple):
            ok, message = answer
            return Check(bool(ok), str(message))
        return Check(bool(answer), "" if answer else "rejected by checker")


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
