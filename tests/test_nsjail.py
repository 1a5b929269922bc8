"""The nsjail sandbox: the shared conformance suite, and what the jail adds."""

import os
import shutil
import tempfile
import time

import pytest

import codeexec
from codeexec import Submission, Verdict
from codeexec.backends import Capability, RunRequest
from codeexec.backends._forkserver import _descendants
from codeexec.backends._jailinit import build_init
from codeexec.backends.nsjail import NsjailSandbox, find_nsjail
from codeexec.testing import SandboxConformance


class TestNsjailSandbox(SandboxConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls):
        sb = NsjailSandbox(slots=2)
        yield sb
        sb.close()


@pytest.fixture(scope="module")
def jail():
    sb = NsjailSandbox(slots=1)
    ex = codeexec.Executor(sb)
    yield ex
    ex.close()
    sb.close()


def run_python(ex, code, **limits):
    return ex.run(Submission(language="python", code=code, limits=limits or None))


@pytest.mark.parametrize(
    "call",
    [
        "ptrace(0, 0, 0, 0)",
        "mount(b'none', b'/tmp', b'tmpfs', 0, None)",
        "unshare(0x10000000)",
        "syscall(321, 0, 0, 0)",  # bpf
        "syscall(250, 0, 0, 0, 0)",  # keyctl
        "syscall(298, 0, 0, -1, -1, 0)",  # perf_event_open
    ],
)
def test_forbidden_system_calls_kill_with_sigsys(jail, call):
    result = run_python(jail, f"import ctypes\nprint(ctypes.CDLL(None).{call})")
    test = result.tests[0]
    assert result.verdict is Verdict.RUNTIME_ERROR, test
    assert test.signal == 31 and "seccomp" in test.message, test


def test_new_user_namespace_refused(jail):
    code = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
pid = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)  # clone(CLONE_NEWUSER|SIGCHLD)
print("cloned" if pid >= 0 else "refused")
"""
    result = run_python(jail, code)
    assert result.tests[0].signal == 31, result.tests[0]


def test_the_jail_sees_only_what_it_needs(jail):
    code = """
import os
print(sorted(os.listdir("/")))
for path in ["/root", "/home", "/var", "/opt", "/srv", "/work"]:
    print(path, os.path.exists(path))
"""
    result = run_python(jail, code)
    out = result.tests[0].stdout
    assert result.verdict is Verdict.ACCEPTED, result.tests[0]
    for hidden in ("/root", "/home", "/var", "/opt", "/srv", "/work"):
        assert f"{hidden} False" in out, out


def test_threads_processes_and_every_language_still_work(jail):
    code = """
import subprocess, threading
t = threading.Thread(target=print, args=("thread",)); t.start(); t.join()
print(subprocess.run(["echo", "child"], capture_output=True, text=True).stdout.strip())
"""
    result = run_python(jail, code)
    assert result.tests[0].stdout == "thread\nchild\n", result.tests[0]


def test_declares_seccomp_and_finds_its_binary():
    sb = NsjailSandbox(slots=1)
    try:
        assert Capability.SECCOMP in sb.capabilities
        assert not sb.missing
        assert sb.version.startswith("nsjail/2 persistent ")
        assert os.access(find_nsjail(), os.X_OK)
    finally:
        sb.close()


def test_missing_binary_is_a_clear_unavailable_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NSJAIL_PATH", str(tmp_path / "no-nsjail"))
    fake = tmp_path / "nsjail"
    fake.write_text("#!/bin/sh\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(codeexec.SandboxUnavailableError, match="does not run here"):
        NsjailSandbox(nsjail_path=str(fake))


def test_toolchains_outside_the_base_mounts_are_mounted(jail, tmp_path):
    sb = jail.sandbox
    request = RunRequest(argv=["/bin/true"], toolchain=("/usr/bin", "/opt/tool/bin", "/srv/x"))
    assert sb.extra_mounts(request) == ("/opt/tool", "/srv/x")


class TestNsjailPerRunSandbox(SandboxConformance):
    """The same guarantees with one nsjail per run (hosts without a C compiler, and
    every run that asks for the network)."""

    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls):
        sb = NsjailSandbox(slots=2, persistent=False)
        assert not sb.persistent and "per-run" in sb.version
        yield sb
        sb.close()


def jail_init(ex):
    """(pid, start time) of the fixture's jail init, as the host sees it."""
    sandbox = ex.sandbox
    for pid in _descendants(sandbox._all[0].pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() != b"/proc/self/fd/4\0":
                    continue
            with open(f"/proc/{pid}/stat") as f:
                return pid, f.read().rsplit(")", 1)[1].split()[19]
        except OSError:
            continue
    raise AssertionError("no jail init found")


def test_one_jail_serves_many_runs_and_its_init_cannot_be_signalled(jail):
    """The jail stays up between runs (its init keeps its pid and start time), and a
    program can neither kill nor stop it (it is not the program's uid), nor read its
    memory or environment (nor see it at all)."""
    assert run_python(jail, "print(1)").verdict is Verdict.ACCEPTED
    first = jail_init(jail)
    attack = """
import os, signal
for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM, signal.SIGSEGV):
    try:
        os.kill(1, sig)
        print("signalled")
    except OSError:
        pass
for name in ("environ", "mem", "fd"):
    try:
        os.listdir("/proc/1/fd") if name == "fd" else open(f"/proc/1/{name}", "rb").read(1)
        print(name, "readable")
    except OSError as exc:
        print(name, "refused", exc.errno)
"""
    attacked = run_python(jail, attack)
    assert attacked.verdict is Verdict.ACCEPTED, attacked.tests[0]
    assert "readable" not in attacked.tests[0].stdout, attacked.tests[0].stdout
    assert "signalled" not in attacked.tests[0].stdout, attacked.tests[0].stdout
    assert run_python(jail, "print(1)").verdict is Verdict.ACCEPTED
    assert jail_init(jail) == first


def test_processes_of_a_run_are_gone_before_the_next(jail):
    run_python(jail, "import subprocess\nsubprocess.Popen(['sleep', '60'], start_new_session=True)")
    code = "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))"
    listing = run_python(jail, code)
    # This program alone (the init is hidden), nothing the previous run left.
    assert len(listing.tests[0].stdout.split()) == 1, listing.tests[0]


def test_toolchain_mounts_are_exactly_the_runs(jail):
    """A run with a toolchain outside the base mounts gets a jail with it; the next
    run without it gets a jail without it."""
    base = "/srv" if os.path.isdir("/srv") else "/opt"
    tool = tempfile.mkdtemp(prefix="codeexec-tool-", dir=base)
    try:
        os.chmod(tool, 0o755)
        script = os.path.join(tool, "tool")
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho tool ran\n")
        os.chmod(script, 0o755)
        sb = jail.sandbox
        env = {"PATH": "/usr/bin:/bin"}
        check = ["/bin/sh", "-c", f"test -e {tool} && echo visible || echo hidden"]
        with_tool = sb.run(RunRequest(argv=[script], toolchain=(tool,), env=env))
        without = sb.run(RunRequest(argv=check, env=env))
        again = sb.run(RunRequest(argv=[script], toolchain=(tool,), env=env))
        assert with_tool.stdout == again.stdout == b"tool ran\n", (with_tool, again)
        assert without.stdout == b"hidden\n", without
    finally:
        shutil.rmtree(tool)


def test_a_network_run_uses_its_own_jail_and_the_next_the_persistent_one(jail):
    online = run_python(jail, "import socket\nprint(socket.gethostname())", network=True)
    assert online.verdict is Verdict.ACCEPTED, online.tests[0]
    after = run_python(jail, "import os\nprint(os.readlink('/proc/self/ns/pid'))")
    assert after.verdict is Verdict.ACCEPTED, after.tests[0]
    init_pid, _ = jail_init(jail)  # the run is in the persistent jail's pid namespace
    assert after.tests[0].stdout.strip() == os.readlink(f"/proc/{init_pid}/ns/pid")


def test_filling_the_scratch_past_the_memory_limit_is_mle_and_the_jail_recovers(jail):
    fill = "f = open('big', 'wb')\nfor _ in range(300):\n    f.write(b'x' * (1 << 20))\n"
    result = run_python(jail, fill, memory="64M", file_size="1G")
    assert result.verdict is Verdict.MEMORY_LIMIT_EXCEEDED, result.tests[0]
    assert run_python(jail, "print(1)").verdict is Verdict.ACCEPTED


def test_without_a_compiler_the_sandbox_falls_back_to_one_nsjail_per_run(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, no gcc
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("CODEEXEC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(codeexec.SandboxUnavailableError, match="no C compiler"):
        NsjailSandbox(slots=1, persistent=True)
    sb = NsjailSandbox(slots=1)
    try:
        assert not sb.persistent
        assert "without its jail init" in caplog.text
    finally:
        sb.close()


def test_the_init_is_built_once_and_a_tampered_build_is_replaced(tmp_path):
    first = build_init(str(tmp_path))
    assert build_init(str(tmp_path)) == first
    os.chmod(first, 0o777)  # writable by others: never executed as it is
    rebuilt = build_init(str(tmp_path))
    assert rebuilt == first and os.stat(rebuilt).st_mode & 0o777 == 0o755


def test_a_jail_whose_init_was_killed_from_outside_is_replaced_before_the_next_run(jail):
    assert run_python(jail, "print(1)").verdict is Verdict.ACCEPTED
    inits = []
    ours = set(_descendants(jail.sandbox._all[0].pid))  # the fixture's one slot
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            owner = os.stat(f"/proc/{entry}").st_uid
        except (OSError, ValueError):
            continue
        # The init runs as root (the runs as the slot's uid); ours is nsjail's child.
        if cmdline == b"/proc/self/fd/4\0" and owner == 0 and int(entry) in ours:
            inits.append(int(entry))
    assert inits, "the persistent jail's init is running"
    for pid in inits:
        os.kill(pid, 9)
    # Killed between runs: wait until it is dead (a kill racing the next run's start
    # is that run's internal_error, as for any sandbox dying under a run).
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}/cmdline") for pid in inits):
        assert time.monotonic() < deadline, "the init did not die"
        time.sleep(0.01)
    result = run_python(jail, "print(2)")
    assert result.verdict is Verdict.ACCEPTED and result.tests[0].stdout == "2\n", result.tests[0]


def test_hundreds_of_jail_starts_never_block_on_the_slots_stderr(tmp_path):
    """Each persistent jail's start writes nsjail's loader warnings to the slot
    server's stderr; a pipe nobody reads fills after a few hundred starts, and then
    every later start would hang. Alternating toolchain mounts restarts the jail on
    every run."""
    extra = tmp_path / "toolchain"
    extra.mkdir()
    with NsjailSandbox(slots=1) as sb:
        for i in range(300):
            request = RunRequest(
                argv=["/bin/true"],
                env={"PATH": "/usr/bin:/bin"},
                toolchain=(str(extra),) if i % 2 else (),
            )
            outcome = sb.run(request)
            assert outcome.error is None and outcome.exit_code == 0, (i, outcome)
