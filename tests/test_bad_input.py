"""Hostile or broken input: a typed error before anything runs, or a correct verdict."""

from pathlib import Path

import pytest

import codeexec
from codeexec import Limits, Submission, TestCase, Verdict

ROOT = Path(__file__).resolve().parents[1]


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


def test_non_utf8_source_is_a_compilation_error_not_a_crash(executor):
    result = executor.run(Submission(language="python", code=b"print('\xff')"))
    assert result.verdict is Verdict.COMPILATION_ERROR
    assert "SyntaxError" in result.compile.stderr and not result.tests


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


@pytest.mark.parametrize(
    ("make", "error", "hint"),
    [
        (lambda: Limits(cputime=1), codeexec.LimitsError, "did you mean 'cpu_time'"),
        (lambda: Limits(memroy="1G"), codeexec.LimitsError, "did you mean 'memory'"),
        (lambda: Submission(languge="python", code="x"), codeexec.SubmissionError, "language"),
        (lambda: TestCase(stdn="1"), codeexec.SubmissionError, "stdin"),
        (lambda: codeexec.File("a", "b", exec=True), codeexec.SubmissionError, "executable"),
    ],
)
def test_a_misspelt_field_is_a_typed_error_that_names_the_right_one(make, error, hint):
    with pytest.raises(error, match=hint):
        make()


@pytest.mark.parametrize(
    "limits",
    [
        {"memory": 10**15},
        {"cpu_time": 10**9},
        {"wall_time": 10**9},
        {"pids": 10**9},
        {"output": "2G"},
        {"file_size": 10**15},
    ],
)
def test_a_limit_beyond_any_machine_is_refused(limits):
    with pytest.raises(codeexec.LimitsError, match="at most|to "):
        Limits(**limits)


def test_the_caps_are_documented():
    guide = (ROOT / "docs" / "guide.md").read_text()
    for cap in ("4096", "32 MiB", "64 KiB", "1 TiB"):
        assert cap in guide, cap


@pytest.mark.parametrize("languages", [["python"], "python", {"python": 1}])
def test_languages_of_the_wrong_type_are_refused_before_any_sandbox_starts(languages):
    with pytest.raises(codeexec.ConfigurationError, match="LanguageRegistry"):
        codeexec.Executor("no-such-sandbox", languages=languages)


def test_a_list_of_languages_is_a_registry():
    python = next(lang for lang in codeexec.default_languages() if lang.name == "python")
    with codeexec.Executor(languages=[python], max_workers=1) as ex:
        assert ex.languages.names() == ["python"]


@pytest.mark.parametrize(
    "tests",
    [[{"input": "1", "expect": "1"}], [{"stdin": "1", "input": "2"}], ["1"]],
)
def test_tests_with_unknown_or_doubled_keys_are_refused(tests):
    with pytest.raises(codeexec.SubmissionError):
        Submission(language="python", code="print(1)", tests=tests)


def test_common_spellings_of_a_test_mean_what_they_say(executor):
    sub = Submission(
        language="python",
        code="print(int(input()) * 2)",
        tests=[{"input": "2", "output": "4"}, {"input": "3", "answer": "7"}],
    )
    result = executor.run(sub)
    assert [t.verdict for t in result.tests] == [Verdict.ACCEPTED, Verdict.WRONG_ANSWER]


def test_a_progress_callback_that_raises_loses_no_result(executor, caplog):
    def progress(done, total):
        raise RuntimeError("the bar broke")

    subs = [Submission(language="python", code=f"print({i})") for i in range(3)]
    results = executor.run_many(subs, progress=progress)
    assert [r.tests[0].stdout for r in results] == ["0\n", "1\n", "2\n"]
    assert "progress callback raised" in caplog.text


def test_a_checker_that_raises_is_an_internal_error_of_that_test(executor):
    def broken(out, expected, test):
        raise ZeroDivisionError("oops")

    result = executor.run(
        Submission(language="python", code="print(1)", tests=[TestCase("", "1")], checker=broken)
    )
    assert result.verdict is Verdict.INTERNAL_ERROR
    assert result.tests[0].message == "the checker failed: ZeroDivisionError: oops"
    assert result.tests[0].stdout == "1\n"  # the run itself is kept


@pytest.mark.parametrize(
    "make",
    [
        lambda: TestCase(name="\ud800"),
        lambda: TestCase(args=["\udcff"]),
        lambda: codeexec.File("\ud800", "x"),
        lambda: Submission(language="python", code="x", metadata={"user_id": "\udcff"}),
        lambda: Submission(language="python", code="x", metadata={"\ud800": 1}),
        lambda: Submission(language="python", code="x", metadata={"n": 10**5000}),
        lambda: codeexec.File("a", "b", executable="no"),
    ],
)
def test_text_that_cannot_be_stored_or_sent_is_refused_before_a_run(make):
    """A lone surrogate ran, then its record was silently lost by the store."""
    with pytest.raises(codeexec.SubmissionError):
        make()


def test_metadata_is_kept_as_json_gives_it_back():
    tags = ["a"]
    sub = Submission(language="python", code="x", metadata={"tags": tags, "pair": (1, 2)})
    tags.append("changed later")
    assert sub.metadata == {"tags": ["a"], "pair": [1, 2]}


@pytest.mark.parametrize("max_workers", [0, -1, 1.5, True])
def test_max_workers_is_checked_before_any_sandbox_starts(max_workers):
    with pytest.raises(codeexec.ConfigurationError, match="max_workers"):
        codeexec.Executor("no-such-sandbox", max_workers=max_workers)
