"""What is particular to the process sandbox (the conformance suite has the rest)."""

import os
import signal
import time

import pytest

import codeexec
from codeexec import Limits, Submission, Verdict
from codeexec.backends import Capability, RunRequest
from codeexec.backends.process import ProcessSandbox

ENV = {"PATH": "/usr/bin:/bin"}


def limits_of(output):
    rows = {}
    for line in output.splitlines()[1:]:
        name = line[:26].strip()
        soft, hard = line[26:].split()[:2]
        rows[name] = (soft, hard)
    return rows


@pytest.mark.parametrize(
    "options",
    [{}, {"init": False, "spawner": True}, {"init": False, "spawner": False}],
    ids=["init", "posix_spawn", "spare"],
)
def test_run_gets_its_rlimits(options):
    limits = Limits(cpu_time=2.5, file_size="1M", pids=20)
    with ProcessSandbox(slots=1, **options) as sb:
        # At once, the soft limits are the run's (the hard ones may follow a moment later).
        first = sb.run(RunRequest(argv=["/bin/cat", "/proc/self/limits"], env=ENV, limits=limits))
        later = sb.run(
            RunRequest(
                argv=["/bin/sh", "-c", "sleep 0.1; cat /proc/self/limits"], env=ENV, limits=limits
            )
        )
    soft = {name: pair[0] for name, pair in limits_of(first.stdout.decode()).items()}
    assert soft["Max cpu time"] == "4"
    assert soft["Max file size"] == str(2**20)
    assert soft["Max processes"] == "21"
    rows = limits_of(later.stdout.decode())
    assert rows["Max cpu time"] == ("4", "4")
    assert rows["Max file size"] == (str(2**20), str(2**20))
    assert rows["Max processes"] == ("21", "21")  # the slot's server shares the uid
    assert rows["Max core file size"] == ("0", "0")
    assert rows["Max open files"] == ("1024", "1024")


@pytest.mark.parametrize("spawner", [True, False], ids=["posix_spawn", "spare"])
def test_both_spawn_paths_isolate_alike(spawner):
    code = "import os; print(os.getuid(), os.getgid(), os.getgroups(), os.getpid())"
    with ProcessSandbox(slots=1, spawner=spawner) as sb, codeexec.Executor(sb) as ex:
        result = ex.run(Submission(language="python", code=code))
    uid, gid, groups, pid = result.tests[0].stdout.split(maxsplit=3)
    assert uid == gid and uid != "0"
    assert groups.strip() == "[]"
    assert int(pid) < 10  # its own pid namespace


def test_many_short_runs_never_fail():
    with ProcessSandbox(slots=2) as sb, codeexec.Executor(sb) as ex:
        subs = [Submission(language="bash", code=f"echo {i}") for i in range(200)]
        results = ex.run_many(subs)
    assert [r.tests[0].stdout for r in results] == [f"{i}\n" for i in range(200)]


def test_killed_server_is_restarted():
    with ProcessSandbox(slots=1) as sb:
        assert sb.run(RunRequest(argv=["/bin/true"], env=ENV)).exit_code == 0
        slot = sb._all[0]
        os.kill(slot.proc.pid, signal.SIGKILL)
        slot.proc.wait()
        time.sleep(0.1)
        outcome = sb.run(RunRequest(argv=["/bin/echo", "back"], env=ENV))
        assert outcome.stdout == b"back\n", outcome


def test_server_killed_during_a_run_is_an_internal_error():
    with ProcessSandbox(slots=1) as sb:
        sb.warm()
        slot = sb._all[0]
        import threading

        threading.Timer(0.3, lambda: os.kill(slot.proc.pid, signal.SIGKILL)).start()
        outcome = sb.run(RunRequest(argv=["/bin/sleep", "5"], env=ENV))
        assert outcome.error is not None
        assert sb.run(RunRequest(argv=["/bin/true"], env=ENV)).exit_code == 0


def test_close_removes_cgroups_and_servers():
    sb = ProcessSandbox(slots=2)
    sb.warm()
    pids = [slot.proc.pid for slot in sb._all]
    dirs = [d for slot in sb._all for d in slot.cgroup.directories]
    assert all(os.path.isdir(d) for d in dirs)
    sb.close()
    assert not any(os.path.exists(d) for d in dirs)
    assert not any(os.path.exists(f"/proc/{p}") for p in pids)
    with pytest.raises(codeexec.SandboxError):
        sb.run(RunRequest(argv=["/bin/true"], env=ENV))


def test_plain_mode_declares_what_it_lacks():
    with ProcessSandbox(slots=1, isolate=False) as sb:
        assert Capability.PID_NAMESPACE in sb.missing
        assert Capability.NETWORK_ISOLATION in sb.missing
        assert "isolate=False" in sb.missing[Capability.PID_NAMESPACE]
        with codeexec.Executor(sb) as ex:
            ok = ex.run(Submission(language="python", code="print(6 * 7)"))
            assert ok.tests[0].stdout == "42\n"
            # Still cgroup-limited and uid-separated as root.
            bomb = ex.run(
                Submission(
                    language="python", code="x = b'x' * (1 << 30)", limits=Limits(memory="64M")
                )
            )
            assert bomb.verdict is Verdict.MEMORY_LIMIT_EXCEEDED


def test_missing_program_is_an_internal_error():
    with ProcessSandbox(slots=1) as sb:
        outcome = sb.run(RunRequest(argv=["/no/such/program"], env=ENV))
    assert outcome.error and "/no/such/program" in outcome.error


NOT_ROOT_SCRIPT = """
import json, codeexec
from codeexec.backends.process import ProcessSandbox
with ProcessSandbox(slots=1) as sb, codeexec.Executor(sb) as ex:
    limits = {"cpu_time": 1, "memory": "128M"}
    ok = ex.run(codeexec.Submission(language="python", code="print(6 * 7)"))
    loop = ex.run(codeexec.Submission(language="python", code="while 1: pass", limits=limits))
    print(json.dumps({
        "missing": dict(sb.missing),
        "ok": [ok.verdict.value, ok.tests[0].stdout],
        "loop": [loop.verdict.value, loop.tests[0].time_limit, loop.tests[0].wall_time],
    }))
"""


def test_not_root_runs_and_says_what_it_lacks():
    import json
    import shutil
    import subprocess
    import sys

    setpriv = shutil.which("setpriv")
    as_nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*as_nobody, sys.executable, "-c", "import codeexec"], cwd="/")
    if probe.returncode != 0:
        pytest.skip("uid 65534 cannot read this checkout's virtualenv")
    proc = subprocess.run(
        [*as_nobody, sys.executable, "-c", NOT_ROOT_SCRIPT],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for capability in ("memory_cgroup", "pid_namespace", "uid_isolation", "kill_all"):
        assert capability in report["missing"], report["missing"]
    assert "RLIMIT_AS" in report["missing"]["memory_cgroup"]
    assert report["ok"] == ["accepted", "42\n"]
    verdict, which, wall = report["loop"]
    assert (verdict, which) == ("time_limit_exceeded", "cpu")
    assert wall < 2.5


def test_lowered_treats_signed_infinities_as_infinite():
    from codeexec.backends._forkserver import lowered

    assert lowered(5, -1) == 5  # RLIM_INFINITY as Python shows it
    assert lowered(5, -1048576) == 5  # above 2**63: as good as infinite
    assert lowered(5, 3) == 3
    assert lowered(0, 8 * 2**20) == 0
