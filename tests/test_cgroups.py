"""Per-slot cgroups on the hierarchy this host has (v1 or hybrid here; v2 in the VM
that scripts/test-cgroup2 boots): what doctor says, where groups go, and delegation."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from codeexec.backends import _cgroups

INFO = _cgroups.describe()
V2_ONLY = pytest.mark.skipif(
    INFO["hierarchy"] != "v2", reason="a cgroup-v2 host (scripts/test-cgroup2 runs these)"
)


def test_doctor_names_the_hierarchy_and_what_it_uses():
    assert INFO["hierarchy"] in ("v1", "v2", "hybrid")
    # Hybrid hosts (v1 controllers and an empty v2 tree) keep using v1.
    expected = {"v1": "v1", "hybrid": "v1", "v2": "v2"}[INFO["hierarchy"]]
    assert INFO.get("using") == expected, INFO
    if "v2" in INFO:
        assert INFO["v2"]["group"].startswith("/")


def test_a_slot_measures_a_run_and_its_group_goes_with_close():
    cgroups, reason = _cgroups.detect()
    assert cgroups is not None, reason
    slot = cgroups.slot("probe")
    directories = slot.directories
    assert all(os.path.isdir(d) for d in directories)
    slot.set_limits(64 << 20, 8)
    slot.begin()
    code = "x = bytearray(40 << 20); import time; time.sleep(0.05)"
    join = "".join(f"open({f!r}, 'w').write(str(os.getpid()))\n" for f in slot.procs_files)
    child = subprocess.Popen([sys.executable, "-c", f"import os\n{join}{code}"])
    while child.poll() is None:
        slot.sample()
    usage = slot.end()
    assert child.returncode == 0
    assert 40 << 20 <= usage.memory_peak <= 64 << 20, usage
    assert usage.cpu_time > 0 and not usage.oom_killed
    cgroups.remove()
    assert not any(os.path.exists(d) for d in directories)


# Run in a child process of its own, in a cgroup made for it: the test runner's own
# cgroup must not move.
DELEGATED = textwrap.dedent("""
    import os, sys
    from codeexec.backends import get_sandbox, RunRequest
    with get_sandbox("process", slots=1) as sb:
        outcome = sb.run(RunRequest(argv=["/bin/true"], env={"PATH": "/bin"}))
        print("exit", outcome.exit_code, open("/proc/self/cgroup").read().strip())
""")


def _in_group(group: str, code: str, *companions: int) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new Python that first moves into ``group``."""
    prologue = f"open({os.path.join(group, 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
    return subprocess.run(
        [sys.executable, "-c", "import os\n" + prologue + code],
        capture_output=True,
        text=True,
        timeout=600,
    )


@V2_ONLY
def test_a_delegated_group_it_is_alone_in_is_used_from_a_leaf(tmp_path):
    """As under systemd Delegate=yes, or a container's cgroup namespace: the group has
    no controllers enabled below it; codeexec moves into a leaf and enables them."""
    root = INFO["v2"]["group"]
    group = os.path.join(root, "codeexec-test-delegated")
    os.makedirs(group, exist_ok=True)
    try:
        proc = _in_group(group, DELEGATED)
        assert proc.returncode == 0, proc.stderr
        assert "exit 0" in proc.stdout
        assert "-host" in proc.stdout  # it moved into its leaf
        with open(os.path.join(group, "cgroup.subtree_control")) as f:
            assert {"memory", "pids", "cpu"} <= set(f.read().split())
    finally:
        _cgroups._remove_tree(group)


@V2_ONLY
def test_a_group_shared_with_other_processes_is_refused_with_the_reason():
    root = INFO["v2"]["group"]
    group = os.path.join(root, "codeexec-test-shared")
    os.makedirs(group, exist_ok=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(other.pid))
        code = textwrap.dedent("""
            from codeexec.backends import _cgroups
            cgroups, reason = _cgroups.detect()
            print(cgroups, reason)
        """)
        proc = _in_group(group, code)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("None") and "other process" in proc.stdout, proc.stdout
    finally:
        other.kill()
        other.wait()
        _cgroups._remove_tree(group)
