"""Contest judging: test groups with points and dependencies, stop at the first failure,
and checker programs (testlib conventions), all with real programs in the process
sandbox."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import codeexec
from codeexec import CheckerProgram, File, Limits, Submission, TestCase, TestGroup, Verdict
from codeexec.cache.keys import fingerprint
from codeexec.testing import SandboxConformance

TESTLIB = File("testlib.h", (Path(__file__).parent / "data" / "testlib_mini.h").read_bytes())

# Doubles its input below 10, echoes it from 10 on: right on small tests only.
SMALL_ONLY = "n = int(input())\nprint(n * 2 if n < 10 else n)\n"


def doubled(n: int, **kw: object) -> TestCase:
    return TestCase(stdin=str(n), expected=str(2 * n), name=f"t{n}", **kw)


def verdicts(result: codeexec.Result) -> list[str]:
    return [t.verdict.short for t in result.tests]


# ---------------------------------------------------------------------------- groups


def test_groups_score_skip_and_depend(executor: codeexec.Executor) -> None:
    groups = [
        TestGroup(name="samples", tests=[doubled(1)], points=0),
        TestGroup(name="small", tests=[doubled(2), doubled(3)], points=30),
        TestGroup(
            name="big",
            tests=[doubled(10), doubled(11), doubled(4)],
            points=70,
            depends_on=["small"],
        ),
        TestGroup(name="all", tests=[doubled(5)], points=5, depends_on=["small", "big"]),
    ]
    result = executor.run(Submission(language="python", code=SMALL_ONLY, groups=groups))
    assert result.verdict is Verdict.WRONG_ANSWER
    # big's first failure skips its remaining tests; "all" depends on big: skipped whole.
    assert verdicts(result) == ["AC", "AC", "AC", "WA", "SK", "SK", "SK"]
    assert [t.group for t in result.tests] == ["samples", "small", "small"] + ["big"] * 3 + ["all"]
    by_name = {g.name: g for g in result.groups}
    assert (by_name["small"].verdict, by_name["small"].score) == (Verdict.ACCEPTED, 30)
    assert (by_name["big"].verdict, by_name["big"].score) == (Verdict.WRONG_ANSWER, 0)
    assert by_name["big"].max_score == 70
    assert by_name["all"].verdict is Verdict.SKIPPED
    assert "'big'" in by_name["all"].message
    assert (result.score, result.max_score) == (30, 105)
    skipped = result.tests[4]
    assert skipped.cpu_time == 0 and "t10" in skipped.message, skipped


def test_a_sum_group_runs_every_test_and_scores_each(executor: codeexec.Executor) -> None:
    group = TestGroup(
        name="each",
        scoring="sum",
        tests=[doubled(1, points=2), doubled(12, points=3), doubled(4, points=5)],
    )
    result = executor.run(Submission(language="python", code=SMALL_ONLY, groups=[group]))
    assert verdicts(result) == ["AC", "WA", "AC"]
    assert [t.points for t in result.tests] == [2, 0, 5]
    assert (result.score, result.max_score) == (7, 10)
    assert result.groups[0].verdict is Verdict.WRONG_ANSWER


def test_a_flat_list_runs_every_test_and_scores_them(executor: codeexec.Executor) -> None:
    tests = [doubled(1), doubled(20), doubled(3, points=4)]
    result = executor.run(Submission(language="python", code=SMALL_ONLY, tests=tests))
    assert verdicts(result) == ["AC", "WA", "AC"]
    assert result.groups == ()
    assert (result.score, result.max_score) == (5, 6)


def test_stop_on_failure_skips_everything_after_it(executor: codeexec.Executor) -> None:
    tests = [doubled(1), doubled(20), doubled(3), doubled(4)]
    sub = Submission(language="python", code=SMALL_ONLY, tests=tests, stop_on_failure=True)
    result = executor.run(sub)
    assert result.verdict is Verdict.WRONG_ANSWER
    assert verdicts(result) == ["AC", "WA", "SK", "SK"]
    assert "t20" in result.tests[2].message
    groups = [
        TestGroup(name="a", tests=[doubled(11)], points=1),
        TestGroup(name="b", tests=[doubled(1)], points=1),
    ]
    result = executor.run(
        Submission(language="python", code=SMALL_ONLY, groups=groups, stop_on_failure=True)
    )
    assert verdicts(result) == ["WA", "SK"]
    assert [g.verdict for g in result.groups] == [Verdict.WRONG_ANSWER, Verdict.SKIPPED]


@pytest.mark.parametrize(
    ("groups", "error"),
    [
        (
            [TestGroup(name="a", tests=[TestCase()]), TestGroup(name="a", tests=[TestCase()])],
            "two groups",
        ),
        ([TestGroup(name="a", tests=[TestCase()], depends_on=["b"])], "not a group listed before"),
        (
            [
                TestGroup(name="a", tests=[TestCase()], depends_on=["b"]),
                TestGroup(name="b", tests=[TestCase()]),
            ],
            "not a group listed before",
        ),
    ],
)
def test_bad_groups_are_refused_before_anything_runs(groups: list, error: str) -> None:
    with pytest.raises(codeexec.SubmissionError, match=error):
        Submission(language="python", code="print(1)", groups=groups)


def test_bad_group_fields_are_refused() -> None:
    with pytest.raises(codeexec.SubmissionError, match="no tests"):
        TestGroup(name="a", tests=[])
    with pytest.raises(codeexec.SubmissionError, match="scoring must be"):
        TestGroup(name="a", tests=[TestCase()], scoring="max")
    with pytest.raises(codeexec.SubmissionError, match="give them points"):
        TestGroup(name="a", tests=[TestCase()], scoring="sum", points=10)
    with pytest.raises(codeexec.SubmissionError, match="points"):
        TestCase(points=-1)
    with pytest.raises(codeexec.SubmissionError, match="not both"):
        Submission(
            language="python",
            code="print(1)",
            tests=[TestCase()],
            groups=[TestGroup(name="a", tests=[TestCase()])],
        )
    with pytest.raises(codeexec.SubmissionError, match="stop_on_failure"):
        Submission(language="python", code="print(1)", stop_on_failure="yes")
    with pytest.raises(codeexec.SubmissionError, match="unknown field 'point'"):
        TestGroup(name="a", tests=[TestCase()], point=3)


# ---------------------------------------------------------------------------- checker programs

# The sum of the input's numbers; half the test's points for an answer off by one.
SUM_CHECKER = r"""
#include "testlib.h"
int main(int argc, char* argv[]) {
    registerTestlibCmd(argc, argv);
    long long n = inf.readLong(), sum = 0;
    for (long long i = 0; i < n; i++) sum += inf.readLong();
    long long expected = ans.readLong();
    if (expected != sum) quitf(_fail, "the answer file says %lld, the sum is %lld", expected, sum);
    long long got = ouf.readLong();
    if (!ouf.seekEof()) quitf(_pe, "extra output after the answer");
    if (got == sum) quitf(_ok, "sum %lld", sum);
    if (got == sum + 1 || got == sum - 1) quitp(0.5, "off by one");
    quitf(_wa, "expected %lld, found %lld", sum, got);
}
"""


def sum_checker(**kw: object) -> CheckerProgram:
    return CheckerProgram(language="cpp", code=SUM_CHECKER, files=[TESTLIB], **kw)


def sum_test(numbers: list[int], answer: int | None = None, **kw: object) -> TestCase:
    stdin = f"{len(numbers)} {' '.join(map(str, numbers))}"
    return TestCase(stdin=stdin, expected=str(sum(numbers) if answer is None else answer), **kw)


@pytest.mark.parametrize(
    ("program", "verdict", "points", "message"),
    [
        ("print(sum(list(map(int, input().split()))[1:]))", "AC", 1.0, "ok sum 6"),
        ("print(sum(list(map(int, input().split()))[1:]) + 1)", "PA", 0.5, "off by one"),
        ("print(2)", "WA", 0.0, "expected 6, found 2"),
        ("print('six')", "PE", 0.0, "expected an integer"),
        ("print(6, 7)", "PE", 0.0, "extra output"),
        ("pass", "WA", 0.0, "unexpected end of file"),
    ],
)
def test_a_testlib_checker_judges(
    executor: codeexec.Executor, program: str, verdict: str, points: float, message: str
) -> None:
    sub = Submission(
        language="python", code=program, tests=[sum_test([1, 2, 3])], checker=sum_checker()
    )
    result = executor.run(sub)
    test = result.tests[0]
    assert test.verdict.short == verdict, test
    assert test.points == points
    assert message in test.message, test
    assert result.verdict.short == verdict
    assert (result.score, result.max_score) == (points, 1)


def test_partial_points_are_in_the_tests_own_points(executor: codeexec.Executor) -> None:
    group = TestGroup(
        name="g",
        scoring="sum",
        tests=[sum_test([1, 2], points=1), sum_test([5], points=4)],
    )
    off_by_one = "print(sum(list(map(int, input().split()))[1:]) + 1)"
    result = executor.run(
        Submission(language="python", code=off_by_one, groups=[group], checker=sum_checker())
    )
    # "points 0.5": half of the first test, an eighth of the second.
    assert [t.points for t in result.tests] == [0.5, 0.5]
    assert verdicts(result) == ["PA", "PA"]
    assert result.score == 1.0 and result.max_score == 5
    minimum = TestGroup(name="m", points=10, tests=[sum_test([1, 2]), sum_test([5])])
    result = executor.run(
        Submission(language="python", code=off_by_one, groups=[minimum], checker=sum_checker())
    )
    assert verdicts(result) == ["PA", "PA"]  # partial points do not skip the rest
    assert result.score == 5.0


def test_a_checker_that_fails_is_the_problems_fault(executor: codeexec.Executor) -> None:
    right = "print(sum(list(map(int, input().split()))[1:]))"
    # An answer file that disagrees with the input: the checker says _fail (exit 3).
    result = executor.run(
        Submission(
            language="python", code=right, tests=[sum_test([1, 2], answer=4)], checker=sum_checker()
        )
    )
    assert result.tests[0].verdict is Verdict.INTERNAL_ERROR
    assert "the answer file says 4" in result.tests[0].message
    assert result.score == 0


@pytest.mark.parametrize(
    ("code", "limits", "message"),
    [
        ("import os\nos.abort()", None, "SIGABRT"),
        ("while True:\n    pass", {"cpu_time": 0.3}, "CPU"),
        ("x = bytearray(400 << 20)\nprint(len(x))", {"memory": "64M"}, "memory"),
        ("import sys\nsys.exit(42)", None, "code 42"),
        ("import sys\nsys.exit(7)", None, "without a 'points X' line"),
        (
            "import sys\nprint('points 3', file=sys.stderr)\nsys.exit(7)",
            None,
            "3 points for a test worth 1",
        ),
    ],
)
def test_a_checker_that_crashes_or_exceeds_its_limits_is_internal_error(
    executor: codeexec.Executor, code: str, limits: dict | None, message: str
) -> None:
    checker = CheckerProgram(language="python", code=code, limits=limits)
    result = executor.run(
        Submission(
            language="python", code="print(1)", tests=[TestCase(expected="1")], checker=checker
        )
    )
    test = result.tests[0]
    assert test.verdict is Verdict.INTERNAL_ERROR, test
    assert message in test.message, test


def test_a_checker_program_reads_the_three_files_in_testlib_order(
    executor: codeexec.Executor,
) -> None:
    checker = CheckerProgram(
        language="python",
        code=(
            "import sys\n"
            "i, o, a = (open(p, 'rb').read() for p in sys.argv[1:4])\n"
            "print(sys.argv[1:], i, o, a, file=sys.stderr)\n"
            "sys.exit(0 if o.split() == a.split()[::-1] else 1)\n"
        ),
    )
    sub = Submission(
        language="python",
        code="print(input()[::-1])",
        tests=[TestCase(stdin="a b", expected="a b"), TestCase(stdin="x y", expected=None)],
        checker=checker,
    )
    result = executor.run(sub)
    assert result.tests[0].verdict is Verdict.ACCEPTED, result.tests[0]
    assert result.tests[0].message == (
        "['input.txt', 'output.txt', 'answer.txt'] b'a b' b'b a\\n' b'a b'"
    )
    # No expected answer: an empty answer file, and the checker still judges.
    assert result.tests[1].verdict is Verdict.WRONG_ANSWER
    assert result.tests[1].message.endswith("b'y x\\n' b''")


def test_a_checker_that_does_not_compile_fails_every_test(executor: codeexec.Executor) -> None:
    checker = CheckerProgram(language="cpp", code="int main( { return 0; }")
    result = executor.run(
        Submission(
            language="python", code="print(1)", tests=[TestCase(), TestCase()], checker=checker
        )
    )
    assert result.verdict is Verdict.INTERNAL_ERROR
    assert verdicts(result) == ["IE", "IE"]
    assert "the checker program did not compile" in result.tests[0].message
    assert "error" in result.tests[0].message


class _CountingSandbox:
    """A real sandbox that counts the compiles it is asked to run."""

    def __init__(self, inner: codeexec.backends.Sandbox) -> None:
        self.inner = inner
        self.compiles = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def run(self, request):  # type: ignore[no-untyped-def]
        if request.collect:
            self.compiles += 1
        return self.inner.run(request)


def test_a_checker_program_is_compiled_once(process_sandbox: object) -> None:
    counting = _CountingSandbox(process_sandbox)  # type: ignore[arg-type]
    with codeexec.Executor(counting) as executor:
        for answer in ("print(3)", "print(4)", "print(5)"):
            sub = Submission(
                language="python", code=answer, tests=[sum_test([1, 2])], checker=sum_checker()
            )
            executor.run(sub)
    # Each python program's syntax check, and the checker once.
    assert counting.compiles == 3 + 1


def test_checker_programs_travel_as_data_and_key_the_cache() -> None:
    sub = Submission(
        language="python",
        code="print(1)",
        groups=[TestGroup(name="g", tests=[sum_test([1], points=2)], points=3)],
        checker=sum_checker(limits={"cpu_time": 1}),
        stop_on_failure=True,
    )
    again = Submission.from_dict(sub.to_dict())
    assert again == sub
    assert again.checker.program.files == (TESTLIB,)
    python = next(lang for lang in codeexec.default_languages() if lang.name == "python")

    def key(s: Submission) -> str:
        return fingerprint(
            s,
            language=python,
            toolchain_version="3",
            sandbox="process",
            checker_identity=s.checker.identity,
        )

    variants = [
        sub,
        Submission(**{**_fields(sub), "checker": sum_checker(limits={"cpu_time": 2})}),
        Submission(
            **{**_fields(sub), "checker": CheckerProgram(language="cpp", code=SUM_CHECKER + "\n")}
        ),
        Submission(**{**_fields(sub), "stop_on_failure": False}),
        Submission(
            **{
                **_fields(sub),
                "groups": [TestGroup(name="g", tests=[sum_test([1], points=2)], points=4)],
            }
        ),
        Submission(
            **{
                **_fields(sub),
                "groups": [TestGroup(name="g", tests=[sum_test([1], points=1)], points=3)],
            }
        ),
    ]
    assert len({key(s) for s in variants}) == len(variants)


def _fields(sub: Submission) -> dict:
    return {
        "language": sub.language,
        "code": sub.code,
        "groups": sub.groups,
        "checker": sub.checker,
        "stop_on_failure": sub.stop_on_failure,
    }


def test_results_with_groups_round_trip_and_come_from_the_cache(
    process_sandbox: object,
) -> None:
    groups = [
        TestGroup(name="a", tests=[doubled(1), doubled(12)], points=40),
        TestGroup(name="b", tests=[doubled(2)], points=60),
    ]
    sub = Submission(language="python", code=SMALL_ONLY, groups=groups, checker=sum_checker())
    plain = Submission(language="python", code=SMALL_ONLY, groups=groups)
    with codeexec.Executor(process_sandbox, cache="memory://") as executor:
        first = executor.run(plain)
        second = executor.run(plain)
        assert not first.cached and second.cached
        assert second.groups == first.groups and second.tests == first.tests
        assert (second.score, second.max_score) == (60, 100)
        assert codeexec.Result.from_dict(first.to_dict()) == first
        assert executor.prepare(sub).fingerprint != executor.prepare(plain).fingerprint


def test_limits_of_a_checker_are_its_own(executor: codeexec.Executor) -> None:
    # The program may have 64 MiB; the checker uses more than that and is fine.
    checker = CheckerProgram(
        language="python",
        code="x = bytearray(150 << 20)\nprint('ok', len(x))",
        limits=Limits(memory="512M"),
    )
    sub = Submission(
        language="python",
        code="print(1)",
        tests=[TestCase(expected="1")],
        limits={"memory": "64M"},
        checker=checker,
    )
    result = executor.run(sub)
    assert result.verdict is Verdict.ACCEPTED, result.tests[0]


# ---------------------------------------------------------------------------- interactive

# Guess the number of the test's input in at most 30 questions ("? g" answered with
# "<", ">" or "="; "! g" to answer). The guess goes to the output file for a checker.
GUESSING_INTERACTOR = r"""
#include "testlib.h"
#include <cstdio>
#include <string>
int main(int argc, char* argv[]) {
    registerInteraction(argc, argv);
    long long n = inf.readLong();
    for (int q = 1; q <= 30; q++) {
        std::string op = ouf.readToken();
        if (op != "?" && op != "!") quitf(_pe, "expected ? or !, found %s", op.c_str());
        long long g = ouf.readLong();
        if (op == "!") {
            std::fprintf(tout, "%lld\n", g);
            std::fclose(tout);
            if (g == n) quitf(_ok, "found %lld in %d questions", n, q);
            quitf(_wa, "answered %lld, the number was %lld", g, n);
        }
        std::printf("%s\n", n < g ? "<" : n > g ? ">" : "=");
        std::fflush(stdout);
    }
    quitf(_wa, "more than 30 questions");
}
"""

BINARY_SEARCH = """
lo, hi = 1, 10**6
while True:
    mid = (lo + hi) // 2
    print("?", mid, flush=True)
    reply = input()
    if reply == "=":
        print("!", mid, flush=True)
        break
    lo, hi = (lo, mid - 1) if reply == "<" else (mid + 1, hi)
"""


def guessing(code: str, numbers: tuple[int, ...] = (777,), **kw: object) -> Submission:
    return Submission(
        language="python",
        code=code,
        tests=[TestCase(stdin=str(n), name=f"n{n}") for n in numbers],
        interactor=codeexec.Interactor(language="cpp", code=GUESSING_INTERACTOR, files=[TESTLIB]),
        limits={"cpu_time": 1, "wall_time": 2},
        **kw,
    )


@pytest.mark.parametrize(
    ("program", "verdict", "message"),
    [
        (BINARY_SEARCH, "AC", "ok found 777 in"),
        ('print("! 5", flush=True)', "WA", "answered 5, the number was 777"),
        ('print("hello 5", flush=True)\ninput()', "PE", "expected ? or !, found hello"),
        ("pass", "WA", "unexpected end of file"),
        # Asks forever without reading a reply: the interactor stops it.
        ('while True:\n    print("? 1", flush=True)', "WA", "more than 30 questions"),
        # Waits for the interactor, which waits for it: idleness, the wall time.
        ("import time\ntime.sleep(60)", "TLE", "wall time"),
        ("input()", "TLE", "wall time"),
        ('print("? 500", flush=True)\nwhile True:\n    pass', "TLE", "CPU"),
        # The conversation went well; then it failed on its own.
        (BINARY_SEARCH + "raise SystemExit(3)", "RE", "exit code 3"),
        # A program that leaves early gets what the interactor made of it.
        ('print("? 500", flush=True)\nraise SystemExit(3)', "WA", "unexpected end of file"),
    ],
)
def test_an_interactor_judges_the_conversation(
    executor: codeexec.Executor, program: str, verdict: str, message: str
) -> None:
    result = executor.run(guessing(program))
    test = result.tests[0]
    assert test.verdict.short == verdict, test
    assert message in test.message, test
    assert test.wall_time < 4, test
    if verdict in ("AC", "WA", "PE"):
        assert test.judge_log.startswith(("ok", "wrong", "FAIL")), test  # its whole stderr


def test_interactive_tests_in_groups_and_every_test_its_own_number(
    executor: codeexec.Executor,
) -> None:
    result = executor.run(guessing(BINARY_SEARCH, numbers=(1, 10**6, 4242)))
    assert verdicts(result) == ["AC", "AC", "AC"]
    assert [t.message.split()[2] for t in result.tests] == ["1", "1000000", "4242"]


@pytest.mark.parametrize(
    ("interactor", "message"),
    [
        ("while True:\n    pass", "the interactor failed: used"),
        ("import os\nos.abort()", "SIGABRT"),
        ("import sys\nsys.exit(3)", "the interactor failed"),
    ],
)
def test_an_interactor_that_fails_is_the_problems_fault(
    executor: codeexec.Executor, interactor: str, message: str
) -> None:
    sub = Submission(
        language="python",
        code="print('? 1', flush=True)\nprint(input())",
        interactor=codeexec.Interactor(
            language="python", code=interactor, limits={"cpu_time": 0.5}
        ),
        limits={"cpu_time": 1, "wall_time": 3},
    )
    result = executor.run(sub)
    test = result.tests[0]
    assert test.verdict is Verdict.INTERNAL_ERROR, test
    assert message in test.message, test


def test_a_checker_program_reads_what_the_interactor_wrote(executor: codeexec.Executor) -> None:
    # The interactor accepts any answer; the checker wants an even one.
    checker = CheckerProgram(
        language="python",
        code=(
            "import sys\n"
            "guess = int(open(sys.argv[2]).read())\n"
            "print('guessed', guess, file=sys.stderr)\n"
            "sys.exit(0 if guess % 2 == 0 else 1)\n"
        ),
    )
    result = executor.run(guessing(BINARY_SEARCH, numbers=(10, 11), checker=checker))
    assert verdicts(result) == ["AC", "WA"]
    assert result.tests[1].message == "guessed 11"


def test_interactive_needs_a_sandbox_that_can_pair_runs() -> None:
    single = codeexec.get_sandbox("process", slots=1)
    with (
        codeexec.Executor(single) as executor,
        pytest.raises(codeexec.ConfigurationError, match="at least 2 slots"),
    ):
        executor.run(guessing(BINARY_SEARCH))
    with pytest.raises(codeexec.SubmissionError, match="the interactor judges"):
        guessing(BINARY_SEARCH, checker="tokens")


def test_interactive_submissions_travel_as_data() -> None:
    sub = guessing(BINARY_SEARCH, numbers=(3, 4))
    again = Submission.from_dict(sub.to_dict())
    assert again == sub
    assert again.interactor.files == (TESTLIB,)


def test_a_problem_file_with_an_interactor(executor: codeexec.Executor, tmp_path: Path) -> None:
    (tmp_path / "interactor.py").write_text(SandboxConformance.ECHO_INTERACTOR)
    (tmp_path / "problem.toml").write_text(
        """
id = "echo"
stop_on_failure = true
limits = { cpu_time = 1, wall_time = 3 }

[interactor]
language = "python"
source = "interactor.py"
limits = { cpu_time = 2 }

[[tests]]
input = "1 2"
[[tests]]
stdin = "3"
points = 4
"""
    )
    problem = codeexec.load_problem(tmp_path / "problem.toml")
    assert problem.id == "echo" and problem.stop_on_failure
    assert problem.interactor.limits.cpu_time == 2
    doubler = SandboxConformance.DOUBLER
    result = executor.run(problem.submission("python", doubler, limits={"memory": "128M"}))
    assert verdicts(result) == ["AC", "AC"], result.tests
    assert (result.score, result.max_score) == (5, 5)
    assert result.metadata["problem_id"] == "echo"
    wrong = executor.run(problem.submission("python", "print(0, flush=True)\ninput()"))
    assert verdicts(wrong) == ["WA", "SK"]
    assert Submission.from_dict(problem.submission("python", doubler).to_dict()).interactor == (
        problem.interactor
    )


def test_tests_run_ahead_on_idle_slots_and_a_failure_stops_them(
    executor: codeexec.Executor,
) -> None:
    assert executor.sandbox.concurrency >= 2
    # Test 2 fails at once; test 3 would sleep for a minute if it were left to run.
    code = (
        "import time\nn = int(input())\nif n == 3:\n    time.sleep(60)\n"
        "print(n * 2 if n != 2 else 0)"
    )
    tests = [doubled(1), doubled(2), doubled(3), doubled(4)]
    sub = Submission(
        language="python", code=code, tests=tests, stop_on_failure=True, limits={"wall_time": 60}
    )
    result = executor.run(sub)
    assert verdicts(result) == ["AC", "WA", "SK", "SK"]
    # The sleeper started ahead was killed, not waited for: the slot is free again.
    follow = executor.run(Submission(language="python", code="print(1)"))
    assert follow.verdict is Verdict.ACCEPTED
    assert result.total_time + follow.total_time < 20
    # In order, whatever order they end in.
    ordered = executor.run(
        Submission(
            language="python",
            code="import time\nn = int(input())\ntime.sleep(0.3 if n % 2 else 0)\nprint(2 * n)",
            tests=[doubled(n) for n in range(1, 9)],
        )
    )
    assert [t.name for t in ordered.tests] == [f"t{n}" for n in range(1, 9)]
    assert verdicts(ordered) == ["AC"] * 8


# ---------------------------------------------------------------------------- limits


def test_a_test_may_override_the_limits(executor: codeexec.Executor) -> None:
    spin = (
        "import time\nend = time.process_time() + float(input())\n"
        "while time.process_time() < end:\n    pass"
    )
    tests = [
        TestCase(stdin="0.6", name="short"),
        TestCase(stdin="0.6", name="long", limits={"cpu_time": 2}),
    ]
    result = executor.run(
        Submission(language="python", code=spin, tests=tests, limits={"cpu_time": 0.3})
    )
    assert verdicts(result) == ["TLE", "AC"]
    with pytest.raises(codeexec.SubmissionError, match="network"):
        TestCase(limits={"network": True})
    with pytest.raises(codeexec.LimitsError, match="cpu_time"):
        TestCase(limits={"cpu_time": -1})
    with pytest.raises(codeexec.LimitsError, match="unknown field"):
        TestCase(limits={"cputime": 1})
    again = TestCase.from_dict(tests[1].to_dict())
    assert again == tests[1] and again.limits == {"cpu_time": 2.0}


def test_a_language_time_multiplier_gives_its_runs_more_time(process_sandbox: object) -> None:
    languages = codeexec.LanguageRegistry(codeexec.default_languages())
    python = languages.get("python")
    languages.register(attrs.evolve(python, name="slowpython", aliases=(), time_multiplier=4))
    spin = (
        "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end:\n    pass"
    )
    with codeexec.Executor(process_sandbox, languages=languages) as executor:
        limits = {"cpu_time": 0.3}
        plain = executor.run(Submission(language="python", code=spin, limits=limits))
        slow = executor.run(Submission(language="slowpython", code=spin, limits=limits))
        assert plain.verdict is Verdict.TIME_LIMIT_EXCEEDED
        assert slow.verdict is Verdict.ACCEPTED, slow.tests[0]
        assert slow.reproducibility["limits"]["cpu_time"] == pytest.approx(1.2)
        assert (
            executor.prepare(Submission(language="slowpython", code=spin)).fingerprint
            != executor.prepare(Submission(language="python", code=spin)).fingerprint
        )
    with pytest.raises(ValueError, match="time_multiplier"):
        attrs.evolve(python, time_multiplier=0)


@pytest.mark.parametrize(
    ("language", "code", "out"),
    [
        (
            "cpp20",
            "#include <cstdio>\n#include <span>\n"
            'int main(){ int a[3]{1,2,3}; std::span s(a); printf("%zu\\n", s.size()); }',
            "3",
        ),
        (
            "cpp23",
            '#include <cstdio>\nint main(){ if consteval { return 1; } else { puts("23"); } }',
            "23",
        ),
        (
            "c11",
            "#include <stdio.h>\n"
            'int main(void){ _Static_assert(__STDC_VERSION__ == 201112L, "c11"); puts("11"); }',
            "11",
        ),
        (
            "c",
            '#include <stdio.h>\nint main(void){ printf("%ld\\n", __STDC_VERSION__); }',
            "201710",
        ),
    ],
)
def test_language_standards(
    executor: codeexec.Executor, language: str, code: str, out: str
) -> None:
    result = executor.run(Submission(language=language, code=code))
    assert result.verdict is Verdict.ACCEPTED, (result.compile, result.tests)
    assert result.tests[0].stdout.strip() == out
    assert "-std=gnu" in " ".join(result.reproducibility["compile_command"])


def test_an_address_space_limit_makes_a_large_allocation_fail(executor: codeexec.Executor) -> None:
    code = (
        "#include <cstdio>\nint main(){ auto *p = new int[512][512][512]; p[1][2][3] = 4;"
        ' printf("%d %p\\n", p[1][2][3], (void*)p); }'
    )
    plain = executor.run(Submission(language="cpp", code=code, limits={"memory": "64M"}))
    assert plain.verdict is Verdict.ACCEPTED  # 512 MiB asked, a page touched
    capped = executor.run(
        Submission(language="cpp", code=code, limits={"memory": "64M", "address_space": "64M"})
    )
    assert capped.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, capped.tests[0]
    assert "address-space" in capped.tests[0].message


def test_memory_limits_below_4_mib(executor: codeexec.Executor) -> None:
    hello = '#include <stdio.h>\nint main(void){ puts("hi"); return 0; }'
    small = executor.run(Submission(language="c", code=hello, limits={"memory": "1M"}))
    assert small.verdict is Verdict.ACCEPTED, small.tests[0]
    grab = (
        "#include <stdlib.h>\nint main(void){ volatile char *p = malloc(3 << 20);"
        " for (int i = 0; i < (3 << 20); i += 4096) p[i] = 1; return p[4096] == 1 ? 0 : 1; }"
    )
    over = executor.run(Submission(language="c", code=grab, limits={"memory": "2M"}))
    assert over.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, over.tests[0]
    with pytest.raises(codeexec.LimitsError, match="memory"):
        Limits(memory="100K")


# ---------------------------------------------------------------------------- generators

# n numbers from a seed (its arguments); counts its own runs in a file it may not keep.
GENERATOR = r"""
#include <cstdio>
#include <cstdlib>
int main(int argc, char* argv[]) {
    int n = atoi(argv[1]);
    unsigned seed = (unsigned)atoi(argv[2]);
    printf("%d", n);
    for (int i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; printf(" %u", seed % 1000); }
    printf("\n");
}
"""
SUM = "n, *xs = map(int, input().split())\nprint(sum(xs))\n"


def generated(*specs: tuple[str, ...], code: str = SUM, **kw: object) -> Submission:
    return Submission(
        language="python",
        code=code,
        tests=[TestCase(generate=spec, name=" ".join(spec)) for spec in specs],
        generators=[codeexec.Generator(name="gen", language="cpp", code=GENERATOR, **kw)],
    )


def test_generated_inputs(process_sandbox: object) -> None:
    counting = _CountingSandbox(process_sandbox)  # type: ignore[arg-type]
    runs = []
    original = counting.run

    def run(request):  # type: ignore[no-untyped-def]
        if request.argv[0].endswith("/main") and len(request.argv) == 3:
            runs.append(tuple(request.argv[1:]))
        return original(request)

    counting.run = run  # type: ignore[method-assign]
    with codeexec.Executor(counting) as executor:
        sub = generated(("gen", "5", "1"), ("gen", "1000", "2"), ("gen", "5", "1"))
        result = executor.run(sub)
        assert verdicts(result) == ["AC", "AC", "AC"], result.tests
        # The same input each time, and the program saw what the generator wrote.
        assert result.tests[0].stdout == result.tests[2].stdout
        assert int(result.tests[1].stdout) > 1000
        assert sorted(runs) == [("1000", "2"), ("5", "1")]  # once per distinct spec
        # Judged again (another program): the inputs come from the cache.
        again = executor.run(generated(("gen", "5", "1"), code=SUM + "# v2\n"))
        assert again.tests[0].stdout == result.tests[0].stdout
        assert len(runs) == 2


def test_a_generator_that_fails_fails_its_tests_only(executor: codeexec.Executor) -> None:
    result = executor.run(generated(("gen", "3", "1"), ("gen", "-1")))
    # argv[2] missing: the generator crashes on its second spec.
    assert verdicts(result) == ["AC", "IE"]
    assert "the generator 'gen -1' failed" in result.tests[1].message
    broken = Submission(
        language="python",
        code=SUM,
        tests=[TestCase(generate=("gen", "1"))],
        generators=[codeexec.Generator(name="gen", language="cpp", code="int main( {")],
    )
    result = executor.run(broken)
    assert result.verdict is Verdict.INTERNAL_ERROR
    assert "generator did not compile" in result.tests[0].message


def test_generators_are_checked_and_keyed() -> None:
    with pytest.raises(codeexec.SubmissionError, match="not among the submission's generators"):
        Submission(language="python", code=SUM, tests=[TestCase(generate=("nope",))])
    with pytest.raises(codeexec.SubmissionError, match="not both"):
        TestCase(stdin="1", generate=("gen",))
    with pytest.raises(codeexec.SubmissionError, match="share a name"):
        generator = codeexec.Generator(name="gen", language="python", code="print(1)")
        Submission(language="python", code=SUM, generators=[generator, generator])
    sub = generated(("gen", "5", "1"))
    assert Submission.from_dict(sub.to_dict()) == sub
    python = next(lang for lang in codeexec.default_languages() if lang.name == "python")

    def key(s: Submission) -> str:
        return fingerprint(s, language=python, toolchain_version="3", sandbox="process")

    assert (
        len(
            {
                key(sub),
                key(generated(("gen", "5", "2"))),
                key(generated(("gen", "5", "1"), limits={"cpu_time": 3})),
            }
        )
        == 3
    )


def test_a_small_memory_limit_keeps_other_verdicts(executor: codeexec.Executor) -> None:
    # With a limit of a few MiB, "near the limit" must stay near: a loop is TLE and an
    # exit code is RE, not a memory verdict.
    limits = {"memory": "2M", "cpu_time": 0.3}
    loop = executor.run(Submission(language="c", code="int main(void){for(;;);}", limits=limits))
    assert loop.verdict is Verdict.TIME_LIMIT_EXCEEDED, loop.tests[0]
    exits = executor.run(Submission(language="c", code="int main(void){return 3;}", limits=limits))
    assert exits.verdict is Verdict.RUNTIME_ERROR, exits.tests[0]
