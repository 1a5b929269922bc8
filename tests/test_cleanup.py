"""close() leaves nothing behind, on every backend and either cgroup hierarchy: no
cgroup, no process, no mount, no container."""

from __future__ import annotations

import os

import pytest

import codeexec
from codeexec import Submission
from codeexec.backends import get_sandbox


def cgroups_made_by_us() -> set[str]:
    """Every codeexec cgroup directory on every cgroup mount."""
    found = set()
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[2] in ("cgroup", "cgroup2")]
    for mount in mounts:
        for root, dirs, _ in os.walk(mount):
            found.update(os.path.join(root, d) for d in dirs if d.startswith("codeexec-"))
    return found


def descendants() -> set[int]:
    """Pids of every process below this one."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def containers() -> set[str]:
    try:
        import docker

        return {c.id for c in docker.from_env().containers.list(all=True)}
    except Exception:  # noqa: BLE001 - no daemon: nothing to leave behind there
        return set()


@pytest.mark.parametrize(
    ("backend", "options"),
    [
        ("process", {}),
        ("nsjail", {}),
        ("nsjail", {"persistent": False}),
        ("docker", {}),
    ],
    ids=["process", "nsjail", "nsjail-per-run", "docker"],
)
def test_close_leaves_no_cgroup_process_mount_or_container(backend, options):
    # Things the session's other sandboxes hold are there before and after alike.
    before = (cgroups_made_by_us(), descendants(), mounts(), containers())
    sandbox = get_sandbox(backend, slots=2, **options)
    with codeexec.Executor(sandbox) as ex:
        # A run that leaves a daemon behind, and one over its memory limit.
        daemon = "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(60)\n"
        ex.run(Submission(language="python", code=daemon))
        ex.run(
            Submission(language="python", code="x = bytearray(1 << 30)", limits={"memory": "64M"})
        )
        during = cgroups_made_by_us()
    sandbox.close()
    after = (cgroups_made_by_us(), descendants(), mounts(), containers())
    if backend != "docker":  # docker's containers have cgroups docker makes
        assert during - before[0], "the sandbox made no cgroup of its own"
    assert after[0] - before[0] == set(), "cgroups left behind"
    assert after[1] - before[1] == set(), "processes left behind"
    assert after[2] - before[2] == set(), "mounts left behind"
    assert after[3] - before[3] == set(), "containers left behind"
