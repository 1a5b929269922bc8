"""The nsjail sandbox: the shared conformance suite, and what the jail adds."""

import os

import pytest

import codeexec
from codeexec import Submission, Verdict
from codeexec.backends import Capability, RunRequest
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
