"""The docker sandbox against a real dockerd: the conformance suite, warm pools,
container limits, clean-state checks and offline images."""

import io
import socket
import tarfile
import threading
import time

import docker
import pytest

import codeexec
from codeexec import Submission, Verdict
from codeexec.backends import RunRequest, build_image
from codeexec.backends.docker import OWNER_LABEL, DockerSandbox
from codeexec.testing import SandboxConformance


@pytest.fixture(scope="module")
def client():
    return docker.from_env()


class TestDockerSandbox(SandboxConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls):
        sb = DockerSandbox(slots=2)
        yield sb
        sb.close()


def run_python(sandbox, code, **limits):
    ex = codeexec.Executor(sandbox)
    try:
        return ex.run(Submission(language="python", code=code, limits=limits or None))
    finally:
        ex.close()


def idle_ids(sandbox):
    return [cid for pool in sandbox.pools() if not pool["network"] for cid in pool["idle"]]


def container_ids(client, **filters):
    """Ids of containers (without inspecting each, which races with removals)."""
    return [c["Id"] for c in client.api.containers(all=True, filters=filters or None)]


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_containers_have_every_limit(client):
    with DockerSandbox(slots=1, cpus=0.5, memory_ceiling="1G") as sb:
        assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
        (cid,) = idle_ids(sb)
        host = client.api.inspect_container(cid)["HostConfig"]
        config = client.api.inspect_container(cid)["Config"]
        assert host["ReadonlyRootfs"] is True
        assert host["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["Memory"] == 1 << 30
        # memswap_limit = mem_limit: no swap. A kernel without swap accounting (cgroup
        # v2 with no swap configured, as in the test VM) has no swap to limit: Docker
        # then reports -1.
        swap_limit = client.info().get("SwapLimit", True)
        assert host["MemorySwap"] == (1 << 30 if swap_limit else -1), client.info()
        assert host["PidsLimit"] > 0 and host["NanoCpus"] == 500_000_000
        assert set(host["Tmpfs"]) == {"/work", "/tmp"}
        assert all("size=" in opts for opts in host["Tmpfs"].values())
        assert config["NetworkDisabled"] is True
        # The init is uid 0 with only what it needs; runs become the container's own
        # uid and drop every capability (the conformance suite checks the runs' side).
        assert config["User"] == "0:0"
        assert sorted(host["CapAdd"]) == ["KILL", "SETGID", "SETPCAP", "SETUID"]
        assert {u["Name"] for u in host["Ulimits"]} >= {"core", "nofile", "nproc"}


def test_a_warm_container_serves_runs_until_it_is_rotated():
    # Each submission is two runs (Python's syntax check, then the test; each
    # run_python has an executor, and a compile cache, of its own): six runs in all.
    with DockerSandbox(slots=1, rotate_after=6) as sb:
        seen = []
        for _ in range(4):
            assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
            wait_for(lambda: idle_ids(sb))
            seen.append(idle_ids(sb)[0])
        assert seen[0] == seen[1], "a clean container is reused"
        assert seen[2] != seen[1], "the third run rotated it out"
        assert seen[3] == seen[2]


def test_nothing_of_a_run_is_left_for_the_next():
    code_leave = """
import ctypes, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
print("shm", libc.shmget(0x1234, 4096, 0o1600))  # IPC_CREAT | 0600
open("/work/left", "w").write("x")
open("/tmp/left", "w").write("x")
open("/dev/shm/left", "w").write("x")
subprocess.Popen(["sleep", "60"], start_new_session=True)
os.chmod("/work", 0)
"""
    code_look = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(0x1234, 0, 0), os.listdir("/work"), os.listdir("/tmp"), os.listdir("/dev/shm"))
print(len([p for p in os.listdir("/proc") if p.isdigit()]))
"""
    with DockerSandbox(slots=1) as sb:
        left = run_python(sb, code_leave)
        assert left.verdict is Verdict.ACCEPTED and "shm -1" not in left.tests[0].stdout, left
        (first,) = idle_ids(sb)
        look = run_python(sb, code_look)
        assert idle_ids(sb) == [first], "the same container served both runs"
        out = look.tests[0].stdout.splitlines()
        assert out[0] == "-1 ['main.py'] [] []", look.tests[0]
        assert out[1] == "1"  # this program alone: nothing left, the init hidden


def test_a_dirty_container_is_discarded(client):
    """Something the run cannot have left, and the init cannot remove (a SysV segment
    of root's, made by a process exec'd into the container from outside), makes the
    container unusable."""
    with DockerSandbox(slots=1) as sb:
        assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
        (dirty,) = idle_ids(sb)
        made = client.containers.get(dirty).exec_run(
            [
                "/bin/sh",
                "-c",
                'exec "$(ls /usr/bin/python3* | head -n 1)" -c'
                ' "import ctypes; print(ctypes.CDLL(None).shmget(42, 4096, 0o1600))"',
            ],
            user="0",
        )
        assert made.exit_code == 0 and int(made.output) >= 0, made
        assert run_python(sb, "print(2)").verdict is Verdict.ACCEPTED
        assert dirty not in idle_ids(sb)
        wait_for(lambda: dirty not in container_ids(client))


def test_a_container_killed_from_outside_is_replaced_without_failing_a_run(client):
    with DockerSandbox(slots=1) as sb:
        assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
        (victim,) = idle_ids(sb)
        client.containers.get(victim).kill()
        result = run_python(sb, "print(2)")
        assert result.verdict is Verdict.ACCEPTED, result.tests[0]
        assert victim not in idle_ids(sb)


def test_the_pool_grows_when_runs_wait_and_shrinks_when_idle():
    with DockerSandbox(slots=2, pool_size=1, idle_timeout=0.5) as sb:
        results = []
        threads = [
            threading.Thread(
                target=lambda: results.append(run_python(sb, "import time; time.sleep(1)"))
            )
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.verdict for r in results] == [Verdict.ACCEPTED] * 2
        assert max(p["size"] for p in sb.pools()) == 2
        wait_for(lambda: [p["size"] for p in sb.pools() if not p["network"]] == [1])


def test_close_removes_every_container_it_made(client):
    sb = DockerSandbox(slots=2, pool_size=2)
    owner = sb._owner
    assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
    wait_for(lambda: len(idle_ids(sb)) == 2)
    sb.close()
    assert container_ids(client, label=f"{OWNER_LABEL}={owner}") == []


def test_oneshot_runs_each_get_a_new_container_and_leave_none(client):
    with DockerSandbox(slots=1, oneshot=True) as sb:
        owner = sb._owner
        # The container's root file system (its own overlay layer).
        code = "print([m for m in open('/proc/self/mountinfo') if m.split()[4] == '/'])"
        starts = {run_python(sb, code).tests[0].stdout for _ in range(2)}
        assert len(starts) == 2, starts
        assert idle_ids(sb) == []
    assert container_ids(client, label=f"{OWNER_LABEL}={owner}") == []


def test_containers_of_a_dead_owner_are_removed(client):
    tag = build_image([])
    dead_owner = f"{socket.gethostname()}:999999:x"  # no such pid
    stale = client.containers.create(tag, ["/bin/true"], labels={OWNER_LABEL: dead_owner})
    with DockerSandbox(slots=1, pool_size=0):
        assert stale.id not in container_ids(client)


def test_the_init_cannot_be_signalled_or_read():
    code = """
import os, signal
for sig in (signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM):
    try:
        os.kill(1, sig)
        print("signalled")
    except OSError:
        pass
for name in ("environ", "mem"):
    try:
        open(f"/proc/1/{name}", "rb").read(1)
        print(name, "readable")
    except OSError as exc:
        print(name, "refused")
"""
    with DockerSandbox(slots=1) as sb:
        first = run_python(sb, code)
        assert first.verdict is Verdict.ACCEPTED, first.tests[0]
        assert "readable" not in first.tests[0].stdout
        assert "signalled" not in first.tests[0].stdout
        (cid,) = idle_ids(sb)
        assert run_python(sb, "print(1)").verdict is Verdict.ACCEPTED
        assert idle_ids(sb) == [cid]


def test_a_named_image_is_used_and_a_missing_one_is_a_clear_error(client):
    tag = build_image(["python"])
    with DockerSandbox(slots=1, image=tag) as sb:
        assert client.images.get(tag).id[7:19] in sb.version  # its digest: the fingerprint
        outcome = sb.run(RunRequest(argv=["/bin/sh", "-c", "echo shell"], env={"PATH": "/bin"}))
        assert outcome.stdout == b"shell\n", outcome
    with pytest.raises(codeexec.SandboxUnavailableError, match="not on this host"):
        DockerSandbox(image="codeexec/does-not-exist:1")


def test_images_are_built_offline_once_and_hold_only_their_toolchains(client):
    tag = build_image(["python"])
    started = time.monotonic()
    assert build_image(["python"]) == tag
    assert time.monotonic() - started < 30
    image = client.images.get(tag)
    assert image.labels["org.codeexec.languages"] == "python"
    out = client.containers.run(
        tag,
        ["/bin/sh", "-c", "test -e /usr/bin/gcc && echo gcc || echo no-gcc; ls /etc"],
        remove=True,
        network_disabled=True,
    )
    assert b"no-gcc" in out, out
    assert b"shadow" not in out  # nothing of the host's /etc but what is written fresh


def test_the_image_command_prints_the_tag_and_refuses_unknown_languages():
    import subprocess
    import sys

    command = [sys.executable, "-m", "codeexec._cli", "image", "build"]
    built = subprocess.run([*command, "python"], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == build_image(["python"])
    unknown = subprocess.run([*command, "cobol"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "unknown language" in unknown.stderr


def test_no_daemon_is_a_clear_unavailable_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    with pytest.raises(codeexec.SandboxUnavailableError, match="no Docker daemon answers"):
        DockerSandbox()


def test_many_concurrent_runs_stay_within_the_slots():
    with DockerSandbox(slots=2, pool_size=1) as sb, codeexec.Executor(sb) as ex:
        subs = [Submission(language="python", code=f"print({i} * {i})") for i in range(40)]
        results = ex.run_many(subs)
        assert [r.tests[0].stdout for r in results] == [f"{i * i}\n" for i in range(40)]
        assert all(p["size"] <= 2 for p in sb.pools())


def test_a_container_that_does_not_come_up_is_an_error_and_is_removed(client):
    # An image with a file where the control directory is bind-mounted: the
    # container cannot start.
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo(".codeexec")
        tar.addfile(info, io.BytesIO(b""))
    client.api.import_image_from_data(data.getvalue(), repository="codeexec-test/broken", tag="1")
    sb = DockerSandbox(slots=1, image="codeexec-test/broken:1")
    owner = sb._owner
    try:
        outcome = sb.run(RunRequest(argv=["/bin/true"], env={"PATH": "/bin"}))
        assert outcome.error and "could not start a container" in outcome.error, outcome
    finally:
        sb.close()
        client.images.remove("codeexec-test/broken:1", force=True)
    assert container_ids(client, label=f"{OWNER_LABEL}={owner}") == []


@pytest.mark.parametrize(
    "options",
    [{"slots": 0}, {"slots": 1, "pool_size": 2}, {"cpus": 1000}, {"rotate_after": 0}],
)
def test_bad_options_are_refused_before_anything_starts(options):
    with pytest.raises(ValueError):
        DockerSandbox(**options)
