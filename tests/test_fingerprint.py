import collections
import types

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codeexec import CallableChecker, File, FloatChecker, Limits, Submission, TestCase
from codeexec._languages import default_languages
from codeexec.cache.keys import fingerprint

LANGUAGES = {lang.name: lang for lang in default_languages()}


def key(sub, version="v1", sandbox="process:1", language=None):
    language = language or LANGUAGES[{"py": "python"}.get(sub.language, sub.language)]
    return fingerprint(sub, language=language, toolchain_version=version, sandbox=sandbox)


BASE = Submission(
    language="cpp",
    code="int main(){}",
    files=[File("data.txt", "abc")],
    tests=[TestCase("1 2", "3", name="a")],
    limits=Limits(cpu_time=1),
)

CHANGES = {
    "language": attrs.evolve(BASE, language="c"),
    "code": attrs.evolve(BASE, code=b"int main(){ }"),
    "files": attrs.evolve(BASE, files=[File("data.txt", "abd")]),
    "file exec bit": attrs.evolve(BASE, files=[File("data.txt", "abc", executable=True)]),
    "stdin": attrs.evolve(BASE, tests=[TestCase("1 3", "3", name="a")]),
    "expected": attrs.evolve(BASE, tests=[TestCase("1 2", "4", name="a")]),
    "args": attrs.evolve(BASE, tests=[TestCase("1 2", "3", args=["-v"], name="a")]),
    "limits": attrs.evolve(BASE, limits=Limits(cpu_time=2)),
    "network": attrs.evolve(BASE, limits=Limits(cpu_time=1, network=True)),
    "compile limits": attrs.evolve(BASE, compile_limits=Limits(cpu_time=3)),
    "checker": attrs.evolve(BASE, checker=FloatChecker()),
}


def test_every_part_changes_the_key():
    keys = {name: key(sub) for name, sub in CHANGES.items()}
    keys["base"] = key(BASE)
    keys["toolchain"] = key(BASE, version="v2")
    keys["sandbox"] = key(BASE, sandbox="nsjail:1")
    assert len(set(keys.values())) == len(keys), keys


def test_equal_submissions_built_differently_match():
    other = Submission(
        language=" CPP ",
        code=b"int main(){}",
        files={"data.txt": b"abc"},
        tests=(TestCase(stdin=b"1 2", expected=b"3", name="a"),),
        limits={"cpu_time": 1.0, "memory": "256M"},
        metadata={"user_id": 7},
    )
    assert key(other) == key(BASE)
    assert len(key(BASE)) == 64


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=64).filter(lambda b: b.strip()), st.binary(max_size=64))
def test_key_is_a_function_of_content(code, stdin):
    a = Submission(language="python", code=code, tests=[TestCase(stdin)])
    b = Submission(language="python", code=bytes(code), tests=[TestCase(bytes(stdin))])
    assert key(a) == key(b)
    c = Submission(language="python", code=code + b"#", tests=[TestCase(stdin)])
    assert key(c) != key(a)


LIMIT_CHANGES = {
    "cpu_time": 1.5,
    "wall_time": 9,
    "memory": "300M",
    "pids": 9,
    "output": "3M",
    "file_size": "5M",
    "network": True,
}


def test_every_limit_changes_the_key():
    """Each field of Limits (run and compile) changes what a run may do: each is keyed."""
    keys = {key(BASE)}
    for field, value in LIMIT_CHANGES.items():
        for which in ("limits", "compile_limits"):
            changed = attrs.evolve(BASE, **{which: {"cpu_time": 1, field: value}})
            keys.add(key(changed))
    assert len(keys) == 1 + 2 * len(LIMIT_CHANGES)


def test_a_language_registered_again_with_other_commands_changes_the_key():
    """A host's own "cpp" with other flags, sources, artifacts or environment."""
    cpp = LANGUAGES["cpp"]
    variants = [
        cpp,
        attrs.evolve(cpp, compile=(*cpp.compile, "-DLOCAL")),
        attrs.evolve(cpp, run=("./main", "--fast")),
        attrs.evolve(cpp, source="solution.cpp"),
        attrs.evolve(cpp, artifacts=("main", "extra")),
        attrs.evolve(cpp, env={"OMP_NUM_THREADS": "1"}),
    ]
    assert len({key(BASE, language=lang) for lang in variants}) == len(variants)
    # Aliases and the version probe do not change how a program runs.
    same = attrs.evolve(cpp, aliases=("cc",), version_command=("g++", "-v"))
    assert key(BASE, language=same) == key(BASE)


def _make_equals(value):
    return lambda out, test: out.strip() == value


def _make_default(value):
    def check(out, test, expected=value):
        return out.strip() == expected

    return check


def _make_nested(value):
    def check(out, test):
        def inner():
            return value

        return out.strip() == inner()

    return check


THRESHOLD = [3]


def _uses_global(out, test):
    return int(out) <= THRESHOLD[0]


def _checker_key(fn):
    return key(attrs.evolve(BASE, checker=fn))


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=False), st.binary()),
    st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=False), st.binary()),
    st.sampled_from([_make_equals, _make_default, _make_nested]),
)
def test_checkers_that_judge_differently_never_share_a_key(a, b, factory):
    """Two checkers from one factory that differ in a closure cell, a default or a
    nested function's closure: the key differs exactly when the value does."""
    first, second = factory(a), factory(b)
    same_behaviour = type(a) is type(b) and repr(a) == repr(b)
    assert (_checker_key(first) == _checker_key(second)) == same_behaviour


def test_lambdas_that_differ_in_a_constant_have_other_keys():
    assert _checker_key(lambda out, t: out == "3") != _checker_key(lambda out, t: out == "4")
    assert _checker_key(lambda out, t: out == "3") == _checker_key(lambda out, t: out == "3")


def test_a_module_global_the_checker_reads_is_keyed_by_its_value():
    before = _checker_key(_uses_global)
    THRESHOLD[0] = 4
    try:
        assert _checker_key(_uses_global) != before
    finally:
        THRESHOLD[0] = 3
    assert _checker_key(_uses_global) == before


def test_a_checker_that_sees_an_opaque_object_is_not_cacheable():
    class Answers:
        value = "3"

    answers = Answers()
    opaque = CallableChecker(lambda out, t: out.strip() == answers.value)
    assert not opaque.cacheable
    # Each such checker has its own key, so not even a shared flight mixes them up.
    other = CallableChecker(lambda out, t: out.strip() == answers.value)
    assert _checker_key(opaque) != _checker_key(other)
    pinned = CallableChecker(lambda out, t: out.strip() == answers.value, identity="answers-v1")
    assert pinned.cacheable and pinned.identity == "answers-v1"


ANSWERS = {i: str(i * i) for i in range(1000)}


def _from_table(out, expected, test):
    return out.strip() == ANSWERS[int(test.name)]


def test_an_answer_table_the_checker_reads_is_keyed_by_every_entry():
    before = _checker_key(_from_table)
    ANSWERS[999] = "changed"
    try:
        assert _checker_key(_from_table) != before
    finally:
        ANSWERS[999] = str(999 * 999)
    assert _checker_key(_from_table) == before


def _keyed(fn):
    """(key, cacheable) of a checker."""
    return CallableChecker(fn).describe()


def _from_source(source, **globals_):
    namespace = {"__name__": "checkers_of_a_host", **globals_}
    exec(source, namespace)  # noqa: S102 - a host's checker, built as hosts build them
    return namespace["check"]


class LenientDict(dict):
    def __missing__(self, key):
        return True


CHECK_WITH = "def check(out, expected, test):\n    return {}\n"


@pytest.mark.parametrize(
    ("expression", "first", "second"),
    [
        # A method bound to data: the data is keyed.
        ("LOOKUP(out) == 'ok'", {"LOOKUP": {"x": "ok"}.get}, {"LOOKUP": {"x": "no"}.get}),
        # A defaultdict's factory answers missing keys.
        (
            "TABLE[out]",
            {"TABLE": collections.defaultdict(lambda: True)},
            {"TABLE": collections.defaultdict(lambda: False)},
        ),
        # A dict and a dict subclass that answers missing keys.
        ("TABLE.get(out, True)", {"TABLE": {}}, {"TABLE": LenientDict()}),
    ],
)
def test_data_a_checker_reaches_is_keyed_however_it_is_reached(expression, first, second):
    a = _keyed(_from_source(CHECK_WITH.format(expression), **first))
    b = _keyed(_from_source(CHECK_WITH.format(expression), **second))
    assert a[0] != b[0] or not (a[1] and b[1])


def test_a_modules_attributes_and_a_functions_attributes_are_keyed():
    config = types.ModuleType("a_hosts_config")
    check = _from_source(CHECK_WITH.format("config.ACCEPT_ALL or out == expected"), config=config)
    config.ACCEPT_ALL = True
    before = _keyed(check)
    config.ACCEPT_ALL = False
    assert _keyed(check) != before
    tolerant = _from_source(CHECK_WITH.format("abs(float(out) - float(expected)) <= check.tol"))
    tolerant.tol = 0.5
    before = _keyed(tolerant)
    tolerant.tol = 0.01
    assert _keyed(tolerant) != before and before[1]


def test_what_cannot_be_read_is_not_cached_and_never_crashes_the_key():
    import os

    reads_environ = _from_source(CHECK_WITH.format("os.environ.get('T') == out"), os=os)
    assert _keyed(reads_environ)[1] is False
    uses_a_checker_class = _from_source(
        CHECK_WITH.format("FloatChecker(abs_tol=1e-3).check(out, expected, test).ok"),
        FloatChecker=FloatChecker,
    )
    assert isinstance(_keyed(uses_a_checker_class)[0], str)
    huge = _from_source(CHECK_WITH.format("int(out) < BIG"), BIG=10**5000)
    assert _keyed(huge)[1] is True
    from json import loads  # a standard-library function: keyed by name, so cached

    assert _keyed(_from_source(CHECK_WITH.format("loads(out) == 1"), loads=loads))[1] is True


def test_scratch_space_is_part_of_the_sandboxs_identity():
    from codeexec.backends.process import ProcessSandbox

    with ProcessSandbox(slots=1, scratch_size="8M") as small, ProcessSandbox(slots=1) as big:
        assert small.version != big.version
