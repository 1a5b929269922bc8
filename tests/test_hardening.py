"""Host-side defences that the conformance suite reaches only through a sandbox: safe
file operations on run-controlled trees, host-wide uid leases, strict File paths, the
one seccomp policy."""

import os
import threading

import pytest

from codeexec import File, SubmissionError
from codeexec.backends import _safefs, _seccomp
from codeexec.backends._uids import lease_uid
from codeexec.backends.process import ProcessSandbox


def _dir_fd(path):
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY)


def test_write_files_never_follows_a_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "x").symlink_to(outside / "x")
    (work / "sub").symlink_to(outside)
    fd = _dir_fd(work)
    try:
        for path in ("x", "sub/y"):
            with pytest.raises(OSError):
                _safefs.write_files(fd, [File(path, b"1")], None)
        _safefs.write_files(fd, [File("ok/deeper/z", b"3")], os.getuid())
    finally:
        os.close(fd)
    assert list(outside.iterdir()) == []
    assert (work / "ok" / "deeper" / "z").read_bytes() == b"3"


def test_collect_skips_links_fifos_and_deep_dirs(tmp_path):
    (tmp_path / "a.class").write_bytes(b"A")
    (tmp_path / "l.class").symlink_to("/etc/hostname")
    os.mkfifo(tmp_path / "p.class")
    deep = tmp_path
    for _ in range(_safefs.CollectLimits.max_depth + 2):
        deep = deep / "d"
    deep.mkdir(parents=True)
    (deep / "b.class").write_bytes(b"B")
    fd = _dir_fd(tmp_path)
    try:
        found = _safefs.collect(
            fd, ("*.class", "d/*.class", "*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*/*")
        )
    finally:
        os.close(fd)
    assert found == {"a.class": b"A"}


def test_collect_has_a_size_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(_safefs.CollectLimits, "max_bytes", 10)
    (tmp_path / "big").write_bytes(b"x" * 11)
    fd = _dir_fd(tmp_path)
    try:
        with pytest.raises(OSError):
            _safefs.collect(fd, ("big",))
    finally:
        os.close(fd)


def test_empty_dir_removes_a_nest_of_any_depth_without_following_links(tmp_path):
    keep = tmp_path / "keep"
    keep.write_text("host file")
    top = tmp_path / "top"
    top.mkdir()
    fd = _dir_fd(top)
    current = os.dup(fd)
    for level in range(5000):
        os.mkdir("n", dir_fd=current)
        child = os.open("n", os.O_RDONLY | os.O_DIRECTORY, dir_fd=current)
        os.close(current)
        current = child
        if level % 1000 == 0:
            os.symlink(str(tmp_path), "up", dir_fd=current)
            os.mkfifo("fifo", dir_fd=current)
    os.close(current)
    try:
        _safefs.empty_dir_fd(fd)
    finally:
        os.close(fd)
    assert os.listdir(top) == []
    assert keep.read_text() == "host file"


@pytest.mark.parametrize("path", ["a/" * 40 + "x", "n" * 300, "d/" + "n" * 1100])
def test_file_paths_are_bounded(path):
    with pytest.raises(SubmissionError):
        File(path, b"")


def test_uid_leases_are_exclusive_until_released(tmp_path):
    first = lease_uid(70000, lock_dir=str(tmp_path))
    second = lease_uid(70000, lock_dir=str(tmp_path))
    assert (first.uid, second.uid) == (70000, 70001)
    first.release()
    third = lease_uid(70000, lock_dir=str(tmp_path))
    assert third.uid == 70000
    second.release()
    third.release()


def test_uid_leases_hold_across_threads_and_sandboxes():
    uids = []
    sandboxes = []

    def make():
        sb = ProcessSandbox(slots=2)
        sandboxes.append(sb)
        uids.extend(slot.uid for slot in sb._all)

    threads = [threading.Thread(target=make) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(uids) == 6 and len(set(uids)) == 6, uids
    finally:
        for sb in sandboxes:
            sb.close()


def test_one_seccomp_policy_for_nsjail_and_the_init():
    program = _seccomp.bpf()
    assert program and len(program) % 8 == 0  # struct sock_filter entries
    policy = _seccomp.kafel()
    for call in ("ptrace", "keyctl", "add_key", "bpf", "setns", "unshare"):
        assert call in policy
    assert "clone_flags & 0x10000000" in policy
