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
    listed = cli(
        "store", "query", "--db", f"sqlite:///{tmp_path}/metadata.db",
        "--hot", str(tmp_path / "blobs"), "--json",
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    records = json.loads(listed.stdout)["records"]
    assert [(r["id"], r["verdict"], r["language"]) for r in records] == [
        (ident, "accepted", "python")
    ]
