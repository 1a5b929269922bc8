import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from codeexec import File, FloatChecker, Limits, Submission, TestCase
from codeexec.cache.keys import fingerprint


def key(sub, version="v1", sandbox="process:1", compiled=True):
    return fingerprint(sub, toolchain_version=version, sandbox=sandbox, compiled=compiled)


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
