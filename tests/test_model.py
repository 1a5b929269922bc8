import json

import pytest

import codeexec
from codeexec import File, Limits, Result, Submission, TestCase, Verdict
from codeexec._model import MAX_TESTS


def test_limits_accept_human_sizes():
    limits = Limits(memory="256M", output="64K", file_size="1.5G", cpu_time="500ms")
    assert limits.memory == 256 * 2**20
    assert limits.output == 64 * 1024
    assert limits.file_size == int(1.5 * 2**30)
    assert limits.cpu_time == 0.5
    assert limits.effective_wall_time == 2.5


@pytest.mark.parametrize(
    "field,value",
    [
        ("cpu_time", -1),
        ("cpu_time", 0),
        ("wall_time", -0.5),
        ("memory", "-5M"),
        ("memory", "lots"),
        ("memory", "12Q"),
        ("memory", 1024),  # below the 4 MiB floor
        ("pids", 0),
        ("pids", 1.5),
        ("output", 0),
        ("network", "yes"),
        ("cpu_time", float("nan")),
    ],
)
def test_bad_limits_are_typed_errors(field, value):
    with pytest.raises(codeexec.LimitsError) as info:
        Limits(**{field: value})
    assert field in str(info.value)
    assert isinstance(info.value, codeexec.SubmissionError)
    assert isinstance(info.value, ValueError)


def test_limits_from_dict_rejects_unknown_fields():
    with pytest.raises(codeexec.LimitsError, match="cpu_tme"):
        Submission(language="python", code="pass", limits={"cpu_tme": 1})


def test_submission_validation():
    with pytest.raises(codeexec.SubmissionError, match="code or files"):
        Submission(language="python")
    with pytest.raises(codeexec.SubmissionError, match="empty"):
        Submission(language="python", code="   \n")
    with pytest.raises(codeexec.SubmissionError, match="language"):
        Submission(language="", code="x")
    with pytest.raises(codeexec.SubmissionError, match="duplicate"):
        Submission(language="python", code="x", files=[File("a", "1"), File("a", "2")])
    with pytest.raises(codeexec.SubmissionError, match="inside the work directory"):
        File("../etc/passwd", "x")
    with pytest.raises(codeexec.SubmissionError, match="inside the work directory"):
        File("/etc/passwd", "x")
    with pytest.raises(codeexec.SubmissionError, match="NUL"):
        TestCase(args=["a\x00b"])


def test_too_many_tests_is_refused_up_front():
    tests = [TestCase()] * 10_000
    with pytest.raises(codeexec.SubmissionError, match=f"at most {MAX_TESTS}"):
        Submission(language="python", code="pass", tests=tests)


def test_too_large_files_are_refused():
    with pytest.raises(codeexec.SubmissionError, match="bytes"):
        Submission(language="python", code="#" * (33 * 2**20))


def test_metadata_does_not_change_equality():
    a = Submission(language="python", code="print(1)", metadata={"user_id": 1})
    b = Submission(language="Python", code=b"print(1)", metadata={"user_id": 2})
    assert a == b
    assert a.language == "python"


def test_result_round_trips_through_json():
    result = Result(
        verdict=Verdict.WRONG_ANSWER,
        tests=(
            codeexec.TestResult(
                name="t1",
                verdict="wrong_answer",
                exit_code=0,
                cpu_time=0.01,
                stdout=b"\xff2\n",
                stderr="",
                message="line 1 differs",
            ),
        ),
        compile=codeexec.CompileResult(ok=True, stderr="warning"),
        fingerprint="ab" * 32,
        backend="process",
        reproducibility={"limits": Limits().to_dict()},
        metadata={"user_id": "u"},
    )
    data = json.loads(json.dumps(result.to_dict()))
    again = Result.from_dict(data)
    assert again == result
    assert again.to_dict() == result.to_dict()
    assert again.tests[0].stdout == "\ufffd2\n"
    assert again.verdict.short == "WA"


def test_verdict_is_a_str_enum():
    assert Verdict("accepted") is Verdict.ACCEPTED
    assert Verdict.TIME_LIMIT_EXCEEDED == "time_limit_exceeded"
    assert {v.short for v in Verdict} == {
        *("AC", "WA", "TLE", "MLE", "OLE", "RE", "CE", "IE", "PE", "PA", "SK")
    }
