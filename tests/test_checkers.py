import pytest

import codeexec
from codeexec import TestCase
from codeexec._checkers import get_checker

T = TestCase()


def check(name, out, exp):
    return get_checker(name).check(out, exp, T)


def test_exact():
    assert check("exact", b"1\n", b"1\n").ok
    assert not check("exact", b"1\n", b"1").ok


def test_default_ignores_trailing_whitespace_and_blank_lines():
    assert check("default", b"1 2  \n3\n\n\n", b"1 2\n3").ok
    assert not check("default", b"1  2\n", b"1 2\n").ok
    result = check("default", b"1\n5\n", b"1\n4\n")
    assert not result.ok and "line 2" in result.message


def test_tokens():
    assert check("tokens", b"1\n2   3", b"1 2 3\n").ok
    assert not check("tokens", b"1 2", b"1 2 3").ok


def test_float_tolerance():
    f = codeexec.FloatChecker(abs_tol=1e-3, rel_tol=0)
    assert f.check(b"3.1416 x", b"3.14159 x", T).ok
    assert not f.check(b"3.15", b"3.14159", T).ok
    assert f.check(b"nan", b"nan", T).ok  # the same token, as testlib has it
    assert not f.check(b"nan", b"1.0", T).ok
    rel = codeexec.FloatChecker(abs_tol=0, rel_tol=1e-6)
    assert rel.check(b"1000000.5", b"1000000", T).ok
    assert rel.identity != f.identity
    with pytest.raises(codeexec.SubmissionError):
        codeexec.FloatChecker(abs_tol=-1)


def test_callable_checker_and_identity_follows_code():
    def even(out, exp, test):
        return int(out) % 2 == 0

    def odd(out, exp, test):
        return int(out) % 2 == 1, "must be odd"

    c = get_checker(even)
    assert c.check(b"4\n", b"", T).ok
    assert not get_checker(odd).check(b"4\n", b"", T).ok
    assert get_checker(odd).check(b"4\n", b"", T).message == "must be odd"
    assert get_checker(even).identity != get_checker(odd).identity


def test_unknown_checker_is_typed_error():
    with pytest.raises(codeexec.SubmissionError, match="available"):
        get_checker("fuzzy")
