"""Lossless round trips: what a host submits and gets back comes back from the store,
the cache and the wire exactly as it went in."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codeexec
from codeexec import File, Limits, Result, Submission, TestCase, TestResult
from codeexec.storage import Store

# Text that is hard to carry: every plane, surrogate-free (code is UTF-8 text or bytes).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | text
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
paths = st.from_regex(r"[a-z][a-z0-9_]{0,8}(/[a-z0-9_]{1,8}){0,2}\.(txt|bin|py)", fullmatch=True)

submissions = st.builds(
    lambda code, files, tests, checker, metadata, cpu: Submission(
        language="python",
        code=code,
        files=files,
        tests=tests,
        checker=checker,
        limits=Limits(cpu_time=cpu),
        metadata=metadata,
    ),
    code=(text | st.binary(max_size=60)).filter(lambda c: bool(c.strip())),
    files=st.lists(
        st.builds(
            File,
            paths.filter(lambda p: p != "main.py"),
            st.binary(max_size=80) | text,
            st.booleans(),
        ),
        max_size=3,
        unique_by=lambda f: f.path,
    ),
    tests=st.lists(
        st.builds(
            TestCase,
            st.binary(max_size=30) | text,
            st.none() | st.binary(max_size=30),
            st.lists(text.filter(lambda a: "\x00" not in a), max_size=2),
            st.none() | text,
        ),
        max_size=3,
    ),
    checker=st.sampled_from(["exact", "default", "tokens", codeexec.FloatChecker(1e-3, 0)]),
    # (submission_id names the record: the store's own tests cover it)
    metadata=st.dictionaries(text.filter(lambda k: k != "submission_id"), json_values, max_size=4),
    cpu=st.floats(0.001, 100),
)

results = st.builds(
    lambda verdict, outs: Result(
        verdict=verdict,
        tests=[
            TestResult(verdict=v, stdout=o, stderr=e, exit_code=c, memory_peak=m, name=n)
            for v, o, e, c, m, n in outs
        ],
        fingerprint="f" * 64,
        backend="process",
    ),
    st.sampled_from(list(codeexec.Verdict)),
    st.lists(
        st.tuples(
            st.sampled_from(list(codeexec.Verdict)),
            text,
            text,
            st.none() | st.integers(-255, 255),
            st.integers(0, 2**40),
            st.none() | text,
        ),
        max_size=3,
    ),
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with Store.at(tmp_path_factory.mktemp("roundtrip"), flush_interval=0.01) as store:
        yield store


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(submission=submissions, result=results)
def test_a_thousand_submissions_come_back_from_the_store_as_they_went_in(store, submission, result):
    ident = store.save(submission, result, created_at=dt.datetime.now(dt.UTC))
    assert store.flush(10)
    stored = store.get(ident)
    assert stored.submission == submission
    assert stored.submission.metadata == submission.metadata
    assert stored.result == result


@settings(max_examples=300, deadline=None)
@given(submission=submissions)
def test_to_dict_and_back_is_the_identity(submission):
    assert Submission.from_dict(submission.to_dict()) == submission
    for test in submission.tests:
        assert TestCase.from_dict(test.to_dict()) == test
    assert Limits.from_dict(submission.limits.to_dict()) == submission.limits


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"verdict": "nonsense"},
        {"verdict": "accepted", "tests": [{}]},
        {"verdict": "accepted", "colour": 1},
        {"verdict": "accepted", "tests": "x"},
        [],
        {"verdict": "accepted", "cached": "yes"},
        {"verdict": "accepted", "queue_time": "abc"},
        {"verdict": "accepted", "metadata": 5},
        {"verdict": "accepted", "reproducibility": "x"},
        {"verdict": "accepted", "tests": [{"verdict": "accepted", "exit_code": "0"}]},
        {"verdict": "accepted", "compile": {"ok": "yes"}},
    ],
)
def test_a_result_dict_codeexec_did_not_write_is_a_typed_error(data):
    with pytest.raises(codeexec.FormatError):
        Result.from_dict(data)
