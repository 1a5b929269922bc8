"""The conformance suite: what every sandbox must do, as pytest tests.

A backend's test file is one subclass with one fixture::

    import pytest
    from codeexec.testing import SandboxConformance

    class TestMySandbox(SandboxConformance):
        @pytest.fixture(scope="class")
        @classmethod
        def sandbox(cls):
            sb = MySandbox()
            yield sb
            sb.close()

Verdict cases live in ``cases.toml`` beside this file; attack cases that need the host's
side (a listener on loopback, a secret in the host's environment, a process to signal)
are methods here. Optional features are skipped by the capabilities a sandbox declares;
isolation is never skipped.
"""

from __future__ import annotations

import ast
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .._executor import Executor
from .._model import Limits, Submission, TestCase, Verdict
from ..backends._protocol import Capability

__all__ = ["CASES", "TIME_SCALE", "SandboxConformance", "load_cases", "scaled"]

#: How much slower than a normal machine this one is (``CODEEXEC_TIME_SCALE``, default
#: 1): an emulated VM sets it from a calibration. Every bound on elapsed time in the
#: suite, and every time limit a program must stay within, is multiplied by it; limits a
#: case means to hit (a TLE case's) are not. What is measured is not scaled (a 0.5 s
#: CPU loop still reports 0.5 s of CPU).
TIME_SCALE = max(1.0, float(os.environ.get("CODEEXEC_TIME_SCALE", "1") or 1))


def scaled(limits: dict[str, Any]) -> dict[str, Any]:
    """Limits fields with the time limits (given or default) multiplied by
    :data:`TIME_SCALE`."""
    if TIME_SCALE == 1.0:
        return limits
    out = dict(limits)
    out["cpu_time"] = float(out.get("cpu_time", Limits().cpu_time)) * TIME_SCALE
    if out.get("wall_time") is not None:
        out["wall_time"] = float(out["wall_time"]) * TIME_SCALE
    return out


def _compile_limits() -> Limits | None:
    """The default compile limits, scaled (None: the defaults as they are)."""
    if TIME_SCALE == 1.0:
        return None
    from .._model import DEFAULT_COMPILE_LIMITS

    return Limits.from_dict(scaled(DEFAULT_COMPILE_LIMITS.to_dict()))


def load_cases() -> list[dict[str, Any]]:
    """The data-driven verdict cases."""
    with open(Path(__file__).with_name("cases.toml"), "rb") as f:
        return list(tomllib.load(f)["case"])


CASES = load_cases()


def _submission(case: dict[str, Any]) -> Submission:
    stdin: str = case.get("stdin", "")
    if "stdin_repeat" in case:
        chunk, count = case["stdin_repeat"]
        stdin = chunk * count
    limits = case.get("limits", {})
    # A limit a case means to hit is not scaled (a slow machine hits it all the same,
    # and sooner); one a program must stay within is.
    meant_to_hit = "time_limit_exceeded" in case.get("verdict_any", [case.get("verdict")])
    return Submission(
        language=case["language"],
        code=case["code"],
        tests=[TestCase(stdin=stdin, expected=case.get("expected"))],
        limits=Limits(**(limits if meant_to_hit else scaled(limits))),
        compile_limits=_compile_limits(),
    )


def sandbox_slots(executor: Executor) -> int:
    return max(1, executor.sandbox.concurrency)


def _host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line or environment holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
                        break
            except OSError:
                continue
    return found


class SandboxConformance:
    """Subclass and provide a class-scoped ``sandbox`` fixture."""

    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls) -> Any:
        raise NotImplementedError("provide a `sandbox` fixture in your subclass")

    @pytest.fixture(scope="class")
    @classmethod
    def executor(cls, sandbox: Any) -> Any:
        ex = Executor(sandbox)
        yield ex
        ex.close()

    def run_code(self, executor: Executor, language: str, code: str, **kw: Any) -> Any:
        """Run ``code`` on one test; ``kw``: its stdin, expected and limits (time limits
        scaled to the machine unless ``unscaled=True``: a run meant to hit them)."""
        stdin = kw.pop("stdin", "")
        expected = kw.pop("expected", None)
        limits = kw if kw.pop("unscaled", False) else scaled(kw)
        sub = Submission(
            language=language,
            code=code,
            tests=[TestCase(stdin=stdin, expected=expected)],
            limits=Limits(**limits),
            compile_limits=_compile_limits(),
        )
        return executor.run(sub)

    # ------------------------------------------------------------------ declared

    def test_declares_itself(self, sandbox: Any) -> None:
        assert isinstance(sandbox.name, str) and sandbox.name
        assert isinstance(sandbox.version, str) and sandbox.version
        assert sandbox.concurrency >= 1
        missing = set(Capability.ISOLATION) - set(sandbox.capabilities)
        assert not missing, f"isolation this host does not get: {dict(sandbox.missing)}"

    # ------------------------------------------------------------------ verdicts

    @pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
    def test_verdict_case(self, executor: Executor, case: dict[str, Any]) -> None:
        started = time.monotonic()
        result = executor.run(_submission(case))
        elapsed = time.monotonic() - started
        allowed = case.get("verdict_any", [case.get("verdict")])
        detail = result.tests[0] if result.tests else result.compile
        assert result.verdict.value in allowed, f"{case['name']}: {result.verdict} {detail}"
        if result.tests:
            test = result.tests[0]
            if "signal" in case:
                assert test.signal == case["signal"], test
            if "exit_code" in case:
                assert test.exit_code == case["exit_code"], test
            if "time_limit" in case:
                assert test.time_limit == case["time_limit"], test
            if "max_run_wall" in case:
                assert test.wall_time <= case["max_run_wall"] * TIME_SCALE, test
            if "stdout_contains" in case:
                assert case["stdout_contains"] in test.stdout, test
        if "max_wall" in case:
            assert elapsed <= case["max_wall"] * TIME_SCALE, f"{case['name']} took {elapsed:.1f}s"

    # ------------------------------------------------------------------ accuracy

    def test_cpu_time_is_accurate(self, executor: Executor) -> None:
        code = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec t; volatile unsigned long n = 0;
    do { for (int i = 0; i < 100000; i++) n++; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t); }
    while (t.tv_sec * 1e9 + t.tv_nsec < 0.5e9);
    printf("%.6f\n", t.tv_sec + t.tv_nsec / 1e9);
    return 0;
}
"""
        result = self.run_code(executor, "c", code, cpu_time=5)
        assert result.verdict is Verdict.ACCEPTED, result
        test = result.tests[0]
        assert 0.45 <= test.cpu_time <= 0.55, test
        assert test.wall_time >= 0.45, test

    def test_memory_peak_is_accurate(self, executor: Executor) -> None:
        code = r"""
#include <stdlib.h>
int main(void) {
    size_t n = 100u << 20; volatile char *p = malloc(n);
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    return p[n - 4096] == 1 ? 0 : 1;
}
"""
        # After a bigger run in the same slots: a group's lifetime peak (cgroup v2
        # before Linux 6.12 cannot reset it) is not this run's.
        bigger = self.run_code(executor, "c", code.replace("100u", "300u"), memory="512M")
        assert bigger.verdict is Verdict.ACCEPTED, bigger
        assert bigger.tests[0].memory_peak >= 299 * 2**20, bigger.tests[0]
        for _ in range(2 * sandbox_slots(executor)):  # every slot had the bigger run
            result = self.run_code(executor, "c", code, memory="512M")
            assert result.verdict is Verdict.ACCEPTED, result
            peak = result.tests[0].memory_peak
            # The kernel charges a cgroup's pages in per-CPU batches (64 pages each),
            # so its counters may lag the truth by a fraction of a MiB either way.
            assert 99 * 2**20 <= peak <= 130 * 2**20, f"memory_peak {peak / 2**20:.2f} MiB"

    def test_pids_limit_holds(self, executor: Executor) -> None:
        code = """
import os, time
n = 0
try:
    while n < 500:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        n += 1
except OSError:
    pass
print(n)
"""
        result = self.run_code(executor, "python", code, pids=16, wall_time=10)
        assert result.verdict is Verdict.ACCEPTED, result
        assert int(result.tests[0].stdout) < 16, result.tests[0]

    # ------------------------------------------------------------------ isolation

    def test_no_network_to_host_loopback(self, executor: Executor) -> None:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            listener.settimeout(0.1)
            port = listener.getsockname()[1]
            code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("connected")
except OSError as e:
    print("blocked", e)
"""
            result = self.run_code(executor, "python", code)
            assert result.tests[0].stdout.startswith("blocked"), result.tests[0]
            with pytest.raises(TimeoutError):
                listener.accept()

    def test_network_when_allowed(self, sandbox: Any, executor: Executor) -> None:
        if Capability.NETWORK_OPTIONAL not in sandbox.capabilities:
            pytest.skip("this sandbox never gives network")
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            port = listener.getsockname()[1]
            code = f"""
import socket
socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"hi")
print("connected")
"""
            result = self.run_code(executor, "python", code, network=True)
            assert result.tests[0].stdout.strip() == "connected", result.tests[0]

    def test_host_secrets_not_readable(self, executor: Executor) -> None:
        token = secrets.token_hex(16)
        secret_file = Path.home() / f".codeexec-conformance-{token[:8]}"
        secret_file.write_text(token)
        secret_file.chmod(0o600)
        os.environ["CODEEXEC_CONFORMANCE_SECRET"] = token
        try:
            code = f"""
import os
found = []
print(sorted(os.environ))
for path in ["/etc/shadow", {str(secret_file)!r}]:
    try:
        found.append(open(path).read()[:100])
    except OSError as e:
        print("denied", path, e.errno)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for name in ("environ", "cmdline"):
            try:
                found.append(open(f"/proc/{{pid}}/{{name}}", "rb").read().decode("latin-1"))
            except OSError:
                pass
print("\\n".join(found))
"""
            result = self.run_code(executor, "python", code)
            out = result.tests[0].stdout
            assert result.verdict is Verdict.ACCEPTED, result.tests[0]
            assert token not in out, "a host secret leaked into the sandbox"
            assert "denied /etc/shadow" in out
            assert "CODEEXEC_CONFORMANCE_SECRET" not in out
        finally:
            del os.environ["CODEEXEC_CONFORMANCE_SECRET"]
            secret_file.unlink()

    def test_host_unix_sockets_unreachable(self, executor: Executor) -> None:
        # Host daemons listen on path-named sockets (a database in /run/postgresql,
        # D-Bus, journald): no network namespace covers those.
        name = f"codeexec-conformance-{secrets.token_hex(6)}.sock"
        paths = [f"/run/{name}", f"/tmp/{name}"]
        listeners = []
        try:
            for path in paths:
                listener = socket.socket(socket.AF_UNIX)
                listener.bind(path)
                os.chmod(path, 0o777)
                listener.listen(4)
                listener.settimeout(0.1)
                listeners.append(listener)
            code = f"""
import socket
for path in {paths!r}:
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("connected", path)
    except OSError as e:
        print("blocked", path, e.errno)
"""
            result = self.run_code(executor, "python", code)
            out = result.tests[0].stdout
            assert "connected" not in out and out.count("blocked") == 2, out
            for listener in listeners:
                with pytest.raises(TimeoutError):
                    listener.accept()
        finally:
            for listener in listeners:
                listener.close()
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    def test_host_processes_invisible(self, executor: Executor) -> None:
        marker = f"codeexec-marker-{secrets.token_hex(8)}"
        host = subprocess.Popen(
            ["bash", "-c", f"exec -a {marker} sleep 60"], env={"MARKER": marker}
        )
        try:
            code = f"""
import os
seen = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            seen.append(open(f"/proc/{{pid}}/cmdline", "rb").read().decode("latin-1"))
        except OSError:
            pass
print("found" if any({marker!r} in s for s in seen) else "hidden")
try:
    os.kill({host.pid}, 9)
    print("killed")
except OSError as e:
    print("kill failed", e.errno)
try:
    os.kill(-1, 9)
except OSError:
    pass
"""
            self.run_code(executor, "python", code)
            time.sleep(0.2)
            assert host.poll() is None, "the sandboxed program killed a host process"
        finally:
            host.kill()
            host.wait()

    def test_host_filesystem_not_writable(self, executor: Executor) -> None:
        name = f"codeexec-probe-{secrets.token_hex(8)}"
        targets = [
            f"/tmp/{name}",
            f"/var/tmp/{name}",
            f"/dev/shm/{name}",
            f"/{name}",
            f"/etc/{name}",
            f"/usr/{name}",
            str(Path.home() / name),
        ]
        code = f"""
import os
for path in {targets!r}:
    try:
        with open(path, "w") as f:
            f.write("x")
    except OSError:
        pass
print("done")
"""
        result = self.run_code(executor, "python", code)
        assert result.tests[0].stdout.strip() == "done", result.tests[0]
        leaked = [t for t in targets if os.path.exists(t)]
        for t in leaked:
            os.unlink(t)
        assert not leaked, f"the sandbox wrote to the host: {leaked}"

    def test_scratch_is_fresh_each_run(self, executor: Executor) -> None:
        token = secrets.token_hex(8)
        write = f"""
for path in ["left-{token}", "/tmp/left-{token}", "/dev/shm/left-{token}"]:
    try:
        open(path, "w").write("x")
    except OSError:
        pass
"""
        look = f"""
import os
paths = ["left-{token}", "/tmp/left-{token}", "/dev/shm/left-{token}"]
hits = [p for p in paths if os.path.exists(p)]
print(hits)
"""
        for _ in range(3):
            self.run_code(executor, "python", write)
            result = self.run_code(executor, "python", look)
            assert result.tests[0].stdout.strip() == "[]", result.tests[0]

    def test_leftover_processes_are_killed(self, executor: Executor) -> None:
        marker = f"codeexec-daemon-{secrets.token_hex(8)}"
        # A double-forked daemon that keeps stdout open: the run must still end when
        # the main process exits, and the daemon must be gone.
        code = f"""
import os, subprocess
subprocess.Popen(["bash", "-c", "exec -a {marker} sleep 30"], start_new_session=True)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("bash", ["bash", "-c", "exec -a {marker} sleep 30"])
    os._exit(0)
print("parent done")
"""
        started = time.monotonic()
        result = self.run_code(executor, "python", code, wall_time=20)
        assert time.monotonic() - started < 5 * TIME_SCALE, "a daemon held the run open"
        assert result.verdict is Verdict.ACCEPTED, result.tests[0]
        deadline = time.monotonic() + 2
        while _host_processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _host_processes_with(marker), "a process outlived its run"

    def test_concurrent_runs_cannot_signal_each_other(
        self, sandbox: Any, executor: Executor
    ) -> None:
        if sandbox.concurrency < 2:
            pytest.skip("one run at a time: nothing concurrent to signal")
        victim_code = "import time\ntime.sleep(2)\nprint('alive')"
        attacker_code = """
import os, signal, time
for _ in range(20):
    for pid in range(2, 4096):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass
    time.sleep(0.05)
"""
        victim: dict[str, Any] = {}
        t = threading.Thread(
            target=lambda: victim.setdefault("r", self.run_code(executor, "python", victim_code))
        )
        t.start()
        time.sleep(0.3)
        self.run_code(executor, "python", attacker_code, wall_time=5)
        t.join()
        assert victim["r"].verdict is Verdict.ACCEPTED, victim["r"].tests[0]
        assert victim["r"].tests[0].stdout.strip() == "alive"

    def test_environment_is_scrubbed_and_home_is_the_work_dir(self, executor: Executor) -> None:
        code = """
import os
home = os.environ["HOME"]
open(os.path.join(home, "note"), "w").write("x")
print(os.path.samefile(home, os.getcwd()), sorted(os.environ))
"""
        result = self.run_code(executor, "python", code)
        same, names = result.tests[0].stdout.split(" ", 1)
        assert same == "True", result.tests[0]
        allowed = {"HOME", "PATH", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "PWD", "SHLVL", "_"}
        assert set(ast.literal_eval(names)) <= allowed, names

    def test_runs_as_unprivileged_user(self, executor: Executor) -> None:
        code = "print(open('/proc/self/status').read())"
        result = self.run_code(executor, "python", code)
        status = dict(
            line.split(":", 1) for line in result.tests[0].stdout.splitlines() if ":" in line
        )
        for ids in ("Uid", "Gid"):
            real, effective, saved, fs = status[ids].split()
            assert real == effective == saved == fs != "0", status[ids]
        assert status["Groups"].strip() in ("", status["Gid"].split()[0]), status["Groups"]
        for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(status[caps], 16) == 0, (caps, status[caps])
        assert status["NoNewPrivs"].strip() == "1"

    # ------------------------------------------------------------------ attacker, then victim
    #
    # Each test runs an attacking submission, then a victim in what is, for every
    # built-in sandbox, the same slot (a run takes the slot or container released
    # last), and checks the victim saw nothing of the attacker.

    def test_runs_start_with_only_fds_0_1_2(self, executor: Executor) -> None:
        code = """
import os
leaked = []
for fd in range(3, 4096):
    try:
        os.fstat(fd)
        leaked.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
    except OSError:
        pass
print(leaked)
"""
        for _ in range(2):
            result = self.run_code(executor, "python", code)
            assert result.verdict is Verdict.ACCEPTED, result.tests[0]
            assert result.tests[0].stdout.strip() == "[]", result.tests[0].stdout

    def test_runs_cannot_reconfigure_other_processes(self, executor: Executor) -> None:
        probe = """
import os, resource
print(resource.getrlimit(resource.RLIMIT_NOFILE), os.getpriority(os.PRIO_PROCESS, 0),
      sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0))
"""
        before = self.run_code(executor, "python", probe)
        assert before.verdict is Verdict.ACCEPTED, before.tests[0]
        attack = """
import os, resource
done = []
for pid in [1, os.getppid(), *range(2, 300)]:
    if pid == os.getpid():
        continue
    for name, call in [
        ("prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (4, 4))),
        ("nice", lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
        ("affinity", lambda: os.sched_setaffinity(pid, {0})),
        ("policy", lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))),
    ]:
        try:
            call()
            done.append((name, pid))
        except OSError:
            pass
print(done)
"""
        self.run_code(executor, "python", attack)
        after = self.run_code(executor, "python", probe)
        assert after.verdict is Verdict.ACCEPTED, after.tests[0]
        assert after.tests[0].stdout == before.tests[0].stdout, (
            before.tests[0].stdout,
            after.tests[0].stdout,
        )

    def test_kernel_keys_do_not_outlive_a_run(self, executor: Executor) -> None:
        marker = f"codeexec-{secrets.token_hex(6)}"
        numbers = {"x86_64": (248, 250), "aarch64": (217, 219)}
        add_key, keyctl = numbers.get(os.uname().machine, (248, 250))
        attack = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for ring in (-4, -5, -3):  # user, user session, session keyring
    print(libc.syscall({add_key}, b"user", b"{marker}", b"secret", 6, ring))
"""
        victim = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
found = [libc.syscall({keyctl}, 10, ring, b"user", b"{marker}", 0) for ring in (-4, -5, -3)]
print("found" if any(k > 0 for k in found) else "none")
try:
    print("found" if "{marker}" in open("/proc/keys").read() else "none")
except OSError:
    pass
"""
        self.run_code(executor, "python", attack)
        result = self.run_code(executor, "python", victim)
        assert "found" not in result.tests[0].stdout, result.tests[0]

    @pytest.mark.parametrize("network", [False, True], ids=["offline", "after_a_network_run"])
    def test_sysv_ipc_does_not_outlive_a_run(
        self, sandbox: Any, executor: Executor, network: bool
    ) -> None:
        if network and Capability.NETWORK_OPTIONAL not in sandbox.capabilities:
            pytest.skip("this sandbox never gives network")
        key = secrets.randbelow(1 << 30) + 1
        attack = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget({key}, 4096, 0o1666), libc.msgget({key}, 0o1666), libc.semget({key}, 1, 0o1666))
"""
        victim = f"""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget({key}, 0, 0), libc.msgget({key}, 0), libc.semget({key}, 0, 0))
"""
        self.run_code(executor, "python", attack, network=network)
        result = self.run_code(executor, "python", victim)
        assert result.tests[0].stdout.split() == ["-1", "-1", "-1"], result.tests[0]

    def test_deep_trees_in_scratch_do_not_break_the_slot(self, executor: Executor) -> None:
        look = "import os\nprint([sorted(os.listdir(d)) for d in ('.', '/tmp', '/dev/shm')])"
        before = self.run_code(executor, "python", look)
        assert before.verdict is Verdict.ACCEPTED, before.tests[0]
        attack = """
import os
for base in (".", "/tmp", "/dev/shm"):
    try:
        fd = os.open(base, os.O_RDONLY)
        for _ in range(3000):
            os.mkdir("d" * 200, dir_fd=fd)
            child = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.mkfifo("fifo", dir_fd=fd)
        os.symlink("/etc/passwd", "link", dir_fd=fd)
        os.close(fd)
    except OSError as e:
        print(base, e)
print("planted")
"""
        result = self.run_code(executor, "python", attack, wall_time=30, cpu_time=20)
        assert "planted" in result.tests[0].stdout, result.tests[0]
        after = self.run_code(executor, "python", look)
        assert after.verdict is Verdict.ACCEPTED, after.tests[0]
        # What the sandbox itself keeps there (the work dir, say) may be listed; not
        # a name the attacker made.
        assert after.tests[0].stdout == before.tests[0].stdout, after.tests[0]
        assert "d" * 200 not in after.tests[0].stdout

    def test_collected_files_are_regular_files_of_the_run(
        self, sandbox: Any, tmp_path: Path
    ) -> None:
        from ..backends import RunRequest

        secret = tmp_path / "host-secret"
        secret.write_text(secrets.token_hex(16))
        secret.chmod(0o644)
        code = f"""
import os
os.symlink({str(secret)!r}, "link.out")
os.symlink("/etc", "dir.out")
os.mkfifo("fifo.out")
os.mkdir("sub")
os.symlink({str(secret)!r}, "sub/link.out")
open("real.out", "w").write("mine")
"""
        python = os.path.realpath(
            "/usr/bin/python3"
            if os.path.exists("/usr/bin/python3")
            else shutil.which("python3") or ""
        )
        request = RunRequest(
            argv=(python, "-c", code),
            limits=Limits(**scaled({"wall_time": 10})),
            collect=("*.out", "*/*.out", "dir.out/*"),
            toolchain=(os.path.dirname(python),),
            language="python",
        )
        started = time.monotonic()
        outcome = sandbox.run(request)
        assert time.monotonic() - started < 15 * TIME_SCALE, "collecting hung"
        assert outcome.error is None and outcome.exit_code == 0, outcome
        assert dict(outcome.collected) == {"real.out": b"mine"}, outcome.collected

    def test_an_earlier_run_does_not_raise_the_memory_limit(self, executor: Executor) -> None:
        # Page cache the attacker charges to the slot (reading files) must not count as
        # the victim's baseline.
        attack = """
import os
read = 0
for root, _, files in os.walk("/usr/lib"):
    for name in files:
        try:
            with open(os.path.join(root, name), "rb") as f:
                while chunk := f.read(1 << 20):
                    read += len(chunk)
        except OSError:
            pass
        if read > 300 << 20:
            break
    if read > 300 << 20:
        break
print(read >> 20)
"""
        self.run_code(executor, "python", attack, memory="512M", wall_time=30, cpu_time=20)
        victim = r"""
#include <stdlib.h>
#include <stdio.h>
int main(void) {
    size_t n = 160u << 20; volatile char *p = malloc(n);
    if (!p) return 3;
    for (size_t i = 0; i < n; i += 4096) p[i] = 1;
    puts("survived");
    return 0;
}
"""
        result = self.run_code(executor, "c", victim, memory="64M")
        assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, result.tests[0]

    def test_nothing_written_anywhere_reaches_a_later_run(self, executor: Executor) -> None:
        # Whatever the attacker finds writable (the scratch, and anything a sandbox
        # forgot: a jail's own root, say) gets a marker; the victim searches the whole
        # file system it sees for one.
        marker = f"codeexec-left-{secrets.token_hex(6)}"
        # Read-only mounts of their own (a jail's /usr, say) are not walked: nothing
        # can be written below them.
        walk = """
import os
def writable_mount(path, parent_dev):
    try:
        st = os.stat(path)
        return st.st_dev == parent_dev or not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False
def dirs():
    for root, names, _ in os.walk("/"):
        dev = os.stat(root).st_dev
        names[:] = [
            n for n in names
            if os.path.join(root, n) not in ("/proc", "/sys")
            and writable_mount(os.path.join(root, n), dev)
        ]
        yield root
"""
        attack = (
            walk
            + f"""
planted = 0
for d in dirs():
    try:
        with open(os.path.join(d, "{marker}"), "w") as f:
            f.write("x")
        planted += 1
    except OSError:
        pass
print(planted)
"""
        )
        victim = (
            walk
            + f"""
print([d for d in dirs() if os.path.exists(os.path.join(d, "{marker}"))])
"""
        )
        planted = self.run_code(executor, "python", attack, wall_time=30, cpu_time=20)
        assert planted.verdict is Verdict.ACCEPTED, planted.tests[0]
        assert int(planted.tests[0].stdout) >= 1, "not even the work dir was writable"
        found = self.run_code(executor, "python", victim, wall_time=30, cpu_time=20)
        assert found.verdict is Verdict.ACCEPTED, found.tests[0]
        assert found.tests[0].stdout.strip() == "[]", found.tests[0].stdout

    def test_sockets_do_not_outlive_a_run(self, executor: Executor) -> None:
        attack = """
import socket
for port in (40001, 40042):
    try:
        listener = socket.socket()
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: TIME_WAIT
        client.close()
    except OSError as e:
        print(port, e)
"""
        victim = """
import socket
print([line.split()[1] for name in ("tcp", "tcp6", "udp", "udp6")
       for line in open(f"/proc/net/{name}").read().splitlines()[1:]])
s = socket.socket()
s.bind(("127.0.0.1", 40001))
print("bound")
"""
        self.run_code(executor, "python", attack)
        result = self.run_code(executor, "python", victim)
        assert result.verdict is Verdict.ACCEPTED, result.tests[0]
        assert result.tests[0].stdout.split() == ["[]", "bound"], result.tests[0].stdout

    def test_filling_scratch_with_a_lowered_oom_score_harms_no_later_run(
        self, executor: Executor
    ) -> None:
        # Scratch (tmpfs) memory is no process's: with its own score lowered, a run
        # may try to make the OOM killer take the sandbox's processes instead.
        attack = """
import os
try:
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write("0")
except OSError:
    pass
i = 0
try:
    while i < 64:
        with open(f"/dev/shm/fill{i}", "wb") as f:
            f.write(b"x" * (4 << 20))
        i += 1
except OSError:
    pass
"""
        result = self.run_code(executor, "python", attack, memory="64M")
        assert result.verdict in (Verdict.MEMORY_LIMIT_EXCEEDED, Verdict.ACCEPTED), result.tests[0]
        victim = self.run_code(executor, "python", "print(open('/proc/self/oom_score_adj').read())")
        assert victim.verdict is Verdict.ACCEPTED, victim.tests[0]
        assert victim.tests[0].stdout.strip() == "1000", victim.tests[0]

    def test_a_program_stalled_at_its_memory_limit_is_memory_limit_exceeded(
        self, executor: Executor
    ) -> None:
        # Scratch files hold most of the limit; in what is left, every read makes the
        # kernel reclaim the run's own page cache again. No allocation ever fails and
        # the OOM killer never strikes: the program runs out of time at its memory
        # limit, which is what the verdict says (the way a program thrashing at its
        # limit ends on a slow disk).
        code = """
import os
for i in range(64):
    with open(f"/dev/shm/fill{i}", "wb") as f:
        f.write(b"x" * (1 << 20))
paths = []
for root, _, files in os.walk("/usr/lib"):
    paths += [os.path.join(root, name) for name in files]
    if len(paths) > 4000:
        break
while True:
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(fd, 1 << 20):
                pass
        finally:
            os.close(fd)
"""
        # Meant to run out of CPU time: the limit is not scaled to a slow machine.
        result = self.run_code(
            executor, "python", code, memory="96M", cpu_time=2, wall_time=60, unscaled=True
        )
        test = result.tests[0]
        assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, test
        assert test.message.startswith("stalled at the memory limit"), test

    def test_only_the_runs_own_processes_are_visible(self, executor: Executor) -> None:
        # The sandbox's own processes (an init that reaps every run, say, whose /proc
        # counters add up earlier runs) are as invisible as the host's.
        code = """
import os
others = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            st = os.stat(f"/proc/{pid}")
        except OSError:
            continue
        if st.st_uid != os.getuid():
            others.append((pid, st.st_uid))
print(others)
"""
        result = self.run_code(executor, "python", code)
        assert result.verdict is Verdict.ACCEPTED, result.tests[0]
        assert result.tests[0].stdout.strip() == "[]", result.tests[0].stdout

    # ------------------------------------------------------------------ interactive

    #: An interactor (testlib's exit codes): the program must echo back, doubled, each
    #: of the test's numbers it is sent, then say "done".
    ECHO_INTERACTOR = """
import os, sys

def say(text):
    try:
        print(text, flush=True)
    except BrokenPipeError:  # the program has ended: its fault, not ours
        print("wrong answer: the program stopped talking", file=sys.stderr, flush=True)
        os._exit(1)

numbers = open(sys.argv[1]).read().split()
for n in numbers:
    say(n)
    line = sys.stdin.readline()
    if not line:
        print("wrong answer: the program stopped talking", file=sys.stderr)
        sys.exit(1)
    if line.split() != [str(2 * int(n))]:
        print(f"wrong answer: {line.strip()!r} for {n}", file=sys.stderr)
        sys.exit(1)
say("done")
print(f"ok {len(numbers)} numbers", file=sys.stderr)
"""
    DOUBLER = """
while (line := input()) != "done":
    print(2 * int(line), flush=True)
"""

    def interactive(self, executor: Executor, code: str, **kw: Any) -> Any:
        from codeexec import Interactor

        sub = Submission(
            language="python",
            code=code,
            tests=[TestCase(stdin="1 2 3 " * 10), TestCase(stdin="7")],
            interactor=Interactor(language="python", code=self.ECHO_INTERACTOR),
            limits=Limits(**scaled({"cpu_time": 2, **kw})),
            compile_limits=_compile_limits(),
        )
        return executor.run(sub)

    def test_interactive_runs_talk_through_their_pipes(self, executor: Executor) -> None:
        result = self.interactive(executor, self.DOUBLER)
        assert result.verdict is Verdict.ACCEPTED, result.tests
        assert [t.message for t in result.tests] == ["ok 30 numbers", "ok 1 numbers"]
        assert all(t.stdout == "" for t in result.tests)  # it went to the interactor

    def test_interactive_verdicts_come_from_both_ends(self, executor: Executor) -> None:
        wrong = self.interactive(executor, "print(5, flush=True)\ninput()")
        assert wrong.tests[0].verdict is Verdict.WRONG_ANSWER, wrong.tests[0]
        assert "'5' for 1" in wrong.tests[0].message
        # A program that ends early: the interactor sees end-of-file, at once.
        started = time.monotonic()
        early = self.interactive(executor, "pass")
        assert early.tests[0].verdict is Verdict.WRONG_ANSWER, early.tests[0]
        assert "stopped talking" in early.tests[0].message
        assert time.monotonic() - started < 10 * TIME_SCALE
        # Each waiting on the other: the program's wall time, not the interactor's.
        idle = self.interactive(executor, "import time\ntime.sleep(600)", wall_time=1)
        test = idle.tests[0]
        assert test.verdict is Verdict.TIME_LIMIT_EXCEEDED, test
        assert test.time_limit == "wall", test

    def test_interactive_runs_are_apart_from_each_other(self, executor: Executor) -> None:
        # The two sides share the pipes and nothing else: not a file, not a process.
        spy = """
import os
input()
os.makedirs("seen", exist_ok=True)
print(sorted(os.listdir(".")), flush=True)
input()
"""
        result = self.interactive(executor, spy)
        test = result.tests[0]
        assert test.verdict is Verdict.WRONG_ANSWER, test
        # The program's work dir holds its own file only: the interactor's input
        # and answer files are not there.
        assert "input.txt" not in test.message and "answer.txt" not in test.message, test

    def test_a_memory_limit_of_a_few_mib_holds(self, executor: Executor) -> None:
        # Below what the sandbox's own processes hold: the OOM killer may strike them,
        # and the verdict is still the run's memory limit, never a sandbox failure.
        grab = r"""
#include <stdlib.h>
int main(void) {
    volatile char *p = malloc(3 << 20);
    for (int i = 0; i < (3 << 20); i += 4096) p[i] = 1;
    return 0;
}
"""
        over = self.run_code(executor, "c", grab, memory="2M")
        assert over.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, over.tests[0]
        small = self.run_code(
            executor, "c", '#include <stdio.h>\nint main(void){puts("hi");}', memory="2M"
        )
        assert small.verdict is Verdict.ACCEPTED, small.tests[0]
        assert small.tests[0].stdout == "hi\n"
