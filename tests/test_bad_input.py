"""Hostile or broken input: a typed error before anything runs, or a correct verdict."""

import pytest

import codeexec
from codeexec import Limits, Submission, TestCase, Verdict


def test_empty_code():
    with pytest.raises(codeexec.SubmissionError):
        Submission(language="python", code="")


def test_non_utf8_output_is_kept_and_judged(executor):
    sub = Submission(
        language="python",
        code="import sys; sys.stdout.buffer.write(b'\\xff\\xfe\\x00ok\\n')",
        tests=[TestCase(expected=b"\xff\xfe\x00ok\n")],
    )
    result = executor.run(sub)
    assert result.verdict is Verdict.ACCEPTED  # compared as bytes
    assert result.tests[0].stdout == "\ufffd\ufffd\x00ok\n"


def test_ten_megabyte_source_runs(executor):
    code = "x = 1\n" + "# padding\n" * (1_000_000) + "print(x)\n"
    assert len(code) > 10_000_000
    result = executor.run(Submission(language="python", code=code))
    assert result.verdict is Verdict.ACCEPTED, result.tests[0]
    assert result.tests[0].stdout == "1\n"


def test_non_utf8_source_is_a_runtime_error_not_a_crash(executor):
    result = executor.run(Submission(language="python", code=b"print('\xff')"))
    assert result.verdict is Verdict.RUNTIME_ERROR
    assert "SyntaxError" in result.tests[0].stderr


def test_negative_limits():
    with pytest.raises(codeexec.LimitsError):
        Submission(language="python", code="1", limits=Limits(memory=-1))


def test_unknown_language_before_anything_runs(executor):
    with pytest.raises(codeexec.UnknownLanguageError):
        executor.submit(Submission(language="brainfuck", code="+"))


def test_many_tests_run(executor):
    tests = [TestCase(f"{i}", f"{i}") for i in range(200)]
    result = executor.run(Submission(language="bash", code="read x; echo $x", tests=tests))
    assert result.verdict is Verdict.ACCEPTED
    assert len(result.tests) == 200


def test_program_reading_no_stdin_gets_eof(executor):
    result = executor.run(
        Submission(language="python", code="import sys; print(repr(sys.stdin.read()))")
    )
    assert result.tests[0].stdout == "''\n"


def test_output_cap_keeps_exactly_the_limit(executor):
    sub = Submission(
        language="python",
        code="import sys\nsys.stdout.write('a' * 5000)\nsys.stdout.flush()\n"
        "sys.stderr.write('b' * 5000)",
        limits=Limits(output="6K"),
    )
    result = executor.run(sub)
    test = result.tests[0]
    assert result.verdict is Verdict.OUTPUT_LIMIT_EXCEEDED
    assert len(test.stdout) + len(test.stderr) == 6 * 1024
    assert test.stderr_truncated
