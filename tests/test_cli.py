import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "codeexec._cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_run_accepted_exits_zero():
    proc = cli("run", str(EXAMPLES / "sum.py"), "--tests", str(EXAMPLES / "sum_tests.json"))
    assert proc.returncode == 0, proc.stderr
    assert "verdict: accepted" in proc.stdout


def test_run_json_and_other_verdict_exits_one(tmp_path):
    src = tmp_path / "loop.c"
    src.write_text("int main(void){for(;;){}}")
    proc = cli("run", str(src), "--cpu-time", "0.5", "--json")
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "time_limit_exceeded"
    assert data["tests"][0]["time_limit"] == "cpu"


def test_run_stdin_option_and_code_from_stdin():
    proc = cli(
        "run",
        "-",
        "--language",
        "python",
        "--stdin",
        "5 6",
        stdin="print(sum(map(int, input().split())))",
    )
    assert proc.returncode == 0, proc.stderr
    assert "11" in proc.stdout


def test_bad_usage_exits_two(tmp_path):
    assert cli("run", str(tmp_path / "missing.py")).returncode == 2
    unknown = tmp_path / "x.unknown"
    unknown.write_text("x")
    proc = cli("run", str(unknown))
    assert proc.returncode == 2 and "--language" in proc.stderr
    proc = cli("run", str(EXAMPLES / "sum.py"), "--memory", "-3M")
    assert proc.returncode == 2 and "memory" in proc.stderr
    assert cli("bogus").returncode == 2


def test_languages_and_doctor():
    proc = cli("languages", "--json")
    assert proc.returncode == 0
    names = {row["name"] for row in json.loads(proc.stdout)}
    assert {"python", "c", "cpp", "javascript", "java", "bash"} <= names
    proc = cli("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    process = report["backends"]["process"]
    assert process["available"] and process["isolated"], process
    assert process["self_test"] == "ok"
    # As root with a C compiler and libseccomp, nothing is missing (seccomp included).
    assert process["missing"] == {}, process["missing"]


def test_run_keeps_the_submission_in_a_store(tmp_path):
    proc = cli(
        "run", str(EXAMPLES / "sum.py"), "--tests", str(EXAMPLES / "sum_tests.json"),
        "--store", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ident = proc.stdout.split("stored as: ")[1].split()[0]
    listed = cli("store", "query", "--store", str(tmp_path), "--json")
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)["records"]
    assert [(r["id"], r["verdict"], r["language"]) for r in records] == [
        (ident, "accepted", "python")
    ]


def test_version_and_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "codeexec", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("codeexec ")
    assert proc.stdout.split()[1][0].isdigit()


def test_run_keeps_user_problem_and_id_and_a_rerun_is_a_revision(tmp_path):
    args = [
        "run",
        str(EXAMPLES / "sum.py"),
        "--tests",
        str(EXAMPLES / "sum_tests.json"),
        "--store",
        str(tmp_path),
        "--user",
        "alice",
        "--problem-id",
        "sum",
        "--id",
        "s-1",
    ]
    assert cli(*args).returncode == 0
    assert cli(*args).returncode == 0
    listed = cli("store", "query", "--store", str(tmp_path), "--user", "alice", "--json")
    records = json.loads(listed.stdout)["records"]
    assert [(r["id"], r["problem_id"]) for r in records] == [("s-1", "sum"), ("s-1", "sum")]
    # The same store named the other way.
    other = cli(
        "store",
        "query",
        "--db",
        f"sqlite:///{tmp_path}/metadata.db",
        "--hot",
        str(tmp_path / "blobs"),
        "--problem",
        "sum",
        "--json",
    )
    assert len(json.loads(other.stdout)["records"]) == 2
    proc = cli("run", str(EXAMPLES / "sum.py"), "--user", "alice")
    assert proc.returncode == 2 and "store" in proc.stderr


def test_a_mistyped_store_is_an_error_and_is_not_created(tmp_path):
    missing = tmp_path / "typo"
    for args in (
        ["store", "query", "--store", str(missing)],
        ["store", "query", "--db", f"sqlite:///{missing}/metadata.db", "--hot", str(missing)],
        ["store", "lifecycle", "--store", str(missing), "--delete-after", "1"],
    ):
        proc = cli(*args)
        assert proc.returncode == 2, proc
        assert "no store here" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not missing.exists()


def test_usage_and_configuration_errors_exit_two_with_one_line(tmp_path):
    store = tmp_path / "s"
    assert cli("store", "migrate", "--store", str(store)).returncode == 0
    cases = [
        ["store", "query", "--store", str(store), "--verdict", "nonsense"],
        ["run", str(EXAMPLES / "sum.py"), "--store", "/proc/no/such/dir"],
        ["run", str(EXAMPLES / "sum.py"), "--store", str(store), "--db", "sqlite://"],
        ["run", str(EXAMPLES / "sum.py"), "--backend", "no-such-sandbox"],
        ["run", str(EXAMPLES / "sum.py"), "--no-such-flag"],
        ["store", "query"],
    ]
    for args in cases:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr, args
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(
            (
                "codeexec: ",
                "codeexec store query: error",
                "usage:",
                "codeexec run: error",
                "codeexec: error",
            )
        ), (args, last)


def test_tests_json_refuses_keys_it_does_not_know_and_takes_common_spellings(tmp_path):
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"inputs": "1 2", "expected": "3"}]))
    proc = cli("run", str(EXAMPLES / "sum.py"), "--tests", str(wrong))
    assert proc.returncode == 2 and "'inputs'" in proc.stderr
    common = tmp_path / "common.json"
    common.write_text(
        json.dumps([{"input": "1 2", "output": "3"}, {"input": "1 1", "output": "3"}])
    )
    proc = cli("run", str(EXAMPLES / "sum.py"), "--tests", str(common))
    assert proc.returncode == 1  # the second test is a wrong answer: the keys meant something
    assert "wrong_answer" in proc.stdout


def test_bad_values_for_the_store_exit_two_without_a_traceback(tmp_path):
    store = tmp_path / "s"
    assert cli("store", "migrate", "--store", str(store)).returncode == 0
    naive_cursor = "WyIyMDI0LTAxLTAxIiwgNV0"  # ["2024-01-01", 5]: a time without a zone
    for args in (
        ["store", "lifecycle", "--store", str(store), "--delete-after", "nan"],
        ["store", "lifecycle", "--store", str(store), "--delete-after", "1e12"],
        ["store", "query", "--store", str(store), "--cursor", naive_cursor],
    ):
        proc = cli(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.stderr)
    # Bytes that are not UTF-8 on a command line (Python keeps them as surrogates).
    for argv in (
        [b"store", b"query", b"--store", str(store).encode(), b"--user", b"\xff"],
        [
            b"run",
            str(EXAMPLES / "sum.py").encode(),
            b"--store",
            str(store).encode(),
            b"--user",
            b"\xff",
        ],
    ):
        proc = subprocess.run(
            [sys.executable.encode(), b"-m", b"codeexec", *argv], capture_output=True, timeout=120
        )
        assert proc.returncode == 2 and b"Traceback" not in proc.stderr, (argv, proc.stderr)


TESTLIB_MINI = Path(__file__).resolve().parent / "data" / "testlib_mini.h"

SUM_CHECK = r"""
#include "testlib.h"
int main(int argc, char* argv[]) {
    registerTestlibCmd(argc, argv);
    long long want = ans.readLong(), got = ouf.readLong();
    if (got == want) quitf(_ok, "sum %lld", want);
    if (got == want + 1) quitp(0.5, "off by one");
    quitf(_wa, "expected %lld, found %lld", want, got);
}
"""


def _problem_dir(tmp_path: Path) -> Path:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "big.in").write_text("3 10 20 30\n")
    (tmp_path / "tests" / "big.ans").write_text("60\n")
    (tmp_path / "check.cpp").write_text(SUM_CHECK)
    (tmp_path / "testlib.h").write_bytes(TESTLIB_MINI.read_bytes())
    (tmp_path / "problem.toml").write_text(
        """
id = "sum-of-n"
limits = { cpu_time = 2 }

[checker]
language = "cpp"
source = "check.cpp"
files = ["testlib.h"]

[[groups]]
name = "samples"
tests = [{ stdin = "2 1 2", expected = "3", name = "s1" }]

[[groups]]
name = "big"
points = 100
depends_on = ["samples"]
tests = [{ input_file = "tests/big.in", answer_file = "tests/big.ans", name = "b1" }]
"""
    )
    return tmp_path / "problem.toml"


def test_run_judges_a_problem_file(tmp_path):
    problem = _problem_dir(tmp_path)
    right = tmp_path / "right.py"
    right.write_text("n, *xs = map(int, input().split())\nprint(sum(xs))\n")
    proc = cli("run", str(right), "--problem", str(problem), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["score"], result["max_score"]) == (100, 100)
    assert [g["verdict"] for g in result["groups"]] == ["accepted", "accepted"]
    assert result["tests"][1]["message"] == "ok sum 60"
    off = tmp_path / "off.py"
    off.write_text("n, *xs = map(int, input().split())\nprint(sum(xs) + 1)\n")
    proc = cli("run", str(off), "--problem", str(problem))
    assert proc.returncode == 1
    assert "score: 0 / 100" in proc.stdout
    assert "group big: skipped" in proc.stdout
    # Stored under the problem's id.
    stored = cli("run", str(right), "--problem", str(problem), "--store", str(tmp_path / "s"))
    assert stored.returncode == 0, stored.stderr
    listed = cli("store", "query", "--store", str(tmp_path / "s"), "--json")
    assert [r["problem_id"] for r in json.loads(listed.stdout)["records"]] == ["sum-of-n"]


def test_a_bad_problem_file_names_the_file_and_the_key(tmp_path):
    problem = _problem_dir(tmp_path)
    problem.write_text(problem.read_text().replace('name = "big"', 'name = "big"\npoint = 3'))
    right = tmp_path / "right.py"
    right.write_text("print(3)\n")
    proc = cli("run", str(right), "--problem", str(problem))
    assert proc.returncode == 2
    assert "problem.toml" in proc.stderr and "'point'" in proc.stderr
    problem.write_text('[[tests]]\ninput_file = "missing.in"\n')
    proc = cli("run", str(right), "--problem", str(problem))
    assert proc.returncode == 2 and "missing.in" in proc.stderr
    proc = cli("run", str(right), "--problem", str(problem), "--checker", "tokens")
    assert proc.returncode == 2 and "--checker" in proc.stderr
