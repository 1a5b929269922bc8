"""The slot server of the process sandbox. Runs as its own process; stdlib + prctl only.

Started once per slot by :mod:`codeexec.backends.process` as
``python -E -s -P -B _forkserver.py CONFIG_JSON``, its control socket's fd in the config. Doing the
expensive work once per slot, not once per run, is what keeps a run's overhead small:

- it joins the slot's cgroup once, so every run is *born* inside it (no per-run
  migration, which can cost 8–16 ms);
- in isolated mode it unshares mount, pid, net, uts, ipc and cgroup namespaces once and
  becomes pid 1 of its pid namespace: at the end of a run ``kill(-1, SIGKILL)`` removes
  every process the run left behind in one call, and it reaps them all;
- it remounts the whole host file system read-only in its mount namespace and gives each
  run fresh tmpfs mounts on /tmp (holding the work dir), /var/tmp and /dev/shm.

Protocol (SOCK_SEQPACKET, one JSON object per message, fds by SCM_RIGHTS):

    server → host  {"op": "hello", "pid": <host pid of the server>, "warnings": [...]}
    server → host  {"op": "ready"}                         after setup and each reset
    host → server  {"op": "run", argv, env, cwd, rlimits, network, keep}
                   + fds [stdin, stdout, stderr]
    server → host  {"op": "exited", "spawn_error": "..."}  if it could not start
    host → server  {"op": "kill"}                          (during a run, any number)
    server → host  {"op": "exited", status, wall_time, utime, stime, maxrss}
    server → host  {"op": "ready"}                         after "exited", unless "keep"
    host → server  {"op": "reset"}                         wipe scratch (after "keep"); "ready"

The server exits when the host closes the socket (the host process died or closed).

With a jail init (``config["init"]``, the default as root) the server starts a jail
once, with the init (``_jailinit.c``) as pid 1 of the jail, and forwards each run to it
(see :class:`PersistentJail` and ``_initproto.py``) instead of spawning: in nsjail mode
nsjail builds that jail (``config["jail"]["init"]``); in process mode the server builds
it itself (:class:`DirectJail`: a pid namespace and a root of only the toolchain
directories). The init starts every run as the slot's uid with no capability and the
seccomp filter of ``_seccomp.py``; it is replaced when a run needs other mounts or the
network, when it dies, or when it finds itself changed.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import fcntl
import gc
import importlib.util
import json
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

import prctl


# The jail init's wire format, shared with the docker sandbox. Loaded by path: this
# server runs as a script with no package (and -P: no script dir on sys.path).
def _load(name: str):  # type: ignore[no-untyped-def]
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        f"codeexec_{name}", os.path.join(here, f"{name}.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


initproto = _load("_initproto")
# Emptying trees the runs controlled (deep nests, links, FIFOs), shared with docker.
safefs = _load("_safefs")

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

_MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
SCRATCH_MOUNTS = ("/tmp", "/var/tmp", "/dev/shm")
#: What the jail init keeps (see _jailinit.c): enough to start each run as its uid
#: and to kill what runs leave behind, nothing else.
INIT_CAPS = (prctl.CAP_SETUID, prctl.CAP_SETGID, prctl.CAP_SETPCAP, prctl.CAP_KILL)
#: Where a DirectJail builds its root (the first that exists; in a mount namespace
#: of its own, so nothing outside sees it).
ROOT_MOUNT_POINTS = ("/run", "/mnt", "/media", "/srv", "/opt", "/home", "/boot")
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
HIDDEN_MOUNTS = ("/run", "/var/run")
SCRATCH_INODES = 16384
#: Largest control message (argv and environment of one run).
MAX_MSG = 1 << 16

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(
        _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
        f"mount {target}",
    )


def send(sock: socket.socket, msg: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[dict | None, list[int]]:
    # Close-on-exec at once: a process forked meanwhile (a jail's start) must not
    # inherit a run's stdout and hold it open. (socket.recv_fds ignores its flags.)
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(
        MAX_MSG, socket.CMSG_SPACE(8 * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), list(fds)


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return path.encode().decode("unicode_escape") if "\\" in path else path


def remount_host_read_only() -> list[str]:
    """Make every mount in this (private) mount namespace read-only; returns warnings."""
    warnings = []
    with open("/proc/self/mountinfo") as f:
        entries = [line.split() for line in f]
    for fields in entries:
        target, options = _unescape(fields[4]), fields[5].split(",")
        if "ro" in options:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            mount(None, target, None, flags)
        except OSError as exc:
            # Over-mounted or vanished mount points cannot be reached; what is
            # reachable is what the program could write to.
            warnings.append(str(exc))
    return warnings


class Server:
    def __init__(self, sock: socket.socket, config: dict, host_net: int | None) -> None:
        self.sock = sock
        self.isolated = config["isolated"]
        self.uid: int | None = config.get("uid")
        self.gid: int = config.get("gid") or 0
        self.workdir = config["workdir"]
        self.scratch_size = int(config["scratch_size"])
        self.host_net = host_net
        self.mounted: set[str] = set()
        self.spare: tuple[int, socket.socket, int] | None = None
        self.prefork_network = False
        self.hard_limits: dict[int, int] = {}
        #: nsjail mode: {"argv": [nsjail and its options for one run], "init": [nsjail
        #: and its options for a persistent jail] or None}; every run is nsjail's.
        self.jail: dict | None = config.get("jail")
        #: The persistent jail that runs are started in, while it is up.
        self.jailed: PersistentJail | None = None
        #: The jail init (_jailinit.c) that starts every run, when there is one:
        #: {"binary": path, "seccomp": the BPF filter, hex, "mounts": the minimal
        #: root's (process mode)}.
        self.init: dict | None = config.get("init")
        self.init_binary: int | None = None
        #: Whether the last run was the init's (which removed its IPC objects).
        self.last_in_init = False
        if self.init is not None:
            self.init_binary = os.open(self.init["binary"], os.O_RDONLY | os.O_CLOEXEC)
        #: Start runs by posix_spawn (isolated, with a uid and a cgroup) or by
        #: handing them to a pre-forked spare (everywhere else without an init).
        self.spawner = (
            bool(config.get("spawner"))
            and self.isolated
            and self.uid is not None
            and self.jail is None
            and self.init is None
        )
        #: Runs start by posix_spawn (spawner or nsjail mode) or from the init, never
        #: from a pre-forked spare.
        self.spawns = self.spawner or self.jail is not None or self.init is not None
        self.own_net: int | None = None
        if self.jail is not None:
            self.own_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            # Held open and executed through /proc/self/fd: the binary may live under
            # a directory our scratch mounts hide (a checkout in /tmp, say).
            self.jail_binary = os.open(self.jail["argv"][0], os.O_RDONLY | os.O_CLOEXEC)

    # ----------------------------------------------------------------- scratch

    def mount_scratch(self) -> None:
        """Private tmpfs mounts for /tmp (which holds the work dir), /var/tmp, /dev/shm,
        and an empty read-only /run: the host's daemons listen on unix sockets there
        (a database, D-Bus, journald), and a socket on a read-only mount still
        accepts connections. A net namespace does not cover path-named sockets."""
        for target in SCRATCH_MOUNTS:
            if os.path.isdir(target):
                self.remount_scratch(target)
        for target in HIDDEN_MOUNTS:
            if os.path.isdir(target) and not os.path.islink(target):
                flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY
                mount("tmpfs", target, "tmpfs", flags, "size=4k,mode=755")
        if self.jail is not None:
            # nsjail builds each jail's root in /run/user/<uid>/ when it can, else in
            # /tmp/, which is the runs' scratch: a run could then write into the root
            # that every later run of the jail sees. Give it a place no run reaches.
            mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=700")
            os.makedirs("/run/user/0", mode=0o700)

    def remount_scratch(self, target: str) -> None:
        """A fresh tmpfs on ``target`` (the old one, if any, detached)."""
        if self.jailed is not None:
            self.kill_all()  # its mount namespace would keep the old one
        if target in self.mounted:
            _check(_libc.umount2(target.encode(), ctypes.c_int(MNT_DETACH)), f"umount {target}")
            self.mounted.discard(target)
        # nr_inodes bounds what the next reset has to delete.
        opts = f"size={self.scratch_size},nr_inodes={SCRATCH_INODES},mode=1777"
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, opts)
        self.mounted.add(target)

    def reset(self) -> None:
        """Give the next run an empty work dir, empty scratch mounts and IPC namespace.

        Emptying the tmpfs mounts, not remounting them: an umount waits for an RCU
        grace period (milliseconds), deleting a handful of files takes microseconds.
        """
        if self.isolated:
            for target in self.mounted:
                try:
                    safefs.empty_dir(target)
                except OSError:
                    # Whatever the run made of it, a new tmpfs is empty.
                    self.remount_scratch(target)
            # The last run's SysV IPC objects go (POSIX queues cannot be made at all:
            # RLIMIT_MSGQUEUE is 0). Cheaper than a new IPC namespace per run. A jail's
            # init removes them itself after each of its runs (not after the others:
            # nsjail's network runs share the namespace).
            if not self.last_in_init:
                _remove_sysv_ipc()
        elif os.path.isdir(self.workdir):
            safefs.empty_dir(self.workdir)
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        if self.uid is not None:
            os.chown(self.workdir, self.uid, self.gid)
        if self.spare is None and not self.spawns:
            self.prefork()

    # ----------------------------------------------------------------- runs

    def serve(self) -> None:
        # Once for every run to inherit: an empty capability bounding set (this
        # server keeps the capabilities it holds, but no exec below it can gain any)
        # and no_new_privs (setuid binaries and file capabilities are inert).
        # (nsjail must start as root with its capabilities; it drops them for the jail.)
        if os.geteuid() == 0 and self.jail is None:
            # The init keeps what it needs to start runs as their uid and to kill
            # what they leave; each run's process drops even those.
            prctl.capbset.limit(*INIT_CAPS if self.init is not None else ())
        prctl.set_no_new_privs(True)
        # The run's rlimits may only be lowered, never raised above ours.
        self.hard_limits = {res: resource.getrlimit(res)[1] for res in _RLIMITS}
        if self.spawner:
            self.become_spawner()
        if self.jail is not None:
            for res in (resource.RLIMIT_MEMLOCK, resource.RLIMIT_MSGQUEUE):
                resource.setrlimit(res, (0, 0))
                self.hard_limits[res] = 0
        # SCHED_BATCH: waking up for bookkeeping (a reset after a run) must not
        # preempt the host's thread; the spare returns to SCHED_OTHER for the run.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        if self.isolated:
            self.mount_scratch()
        self.reset()
        if self.init_binary is not None:
            # Up before the first run (with no extra mounts, what most runs need);
            # if it cannot start, the first run says why.
            with contextlib.suppress(OSError):
                self.jailed = self.start_jail((), False)
        send(self.sock, {"op": "ready"})
        while True:
            msg, fds = recv(self.sock)
            if msg is None:
                return
            op = msg.get("op")
            if op == "run":
                self.run(msg, fds)
                if not msg.get("keep"):
                    # Nothing to collect: wipe at once, while the host finishes up.
                    self.reset()
                    send(self.sock, {"op": "ready"})
            elif op == "reset":
                self.reset()
                send(self.sock, {"op": "ready"})
            else:
                for fd in fds:
                    os.close(fd)

    def prefork(self) -> None:
        """Fork the next run's process now, off the critical path of that run.

        The spare drops its privileges at once and waits for its command; a run
        then costs one message and an exec instead of a fork of this server.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        gc.freeze()  # keep GC bookkeeping out of the pages the child will share
        pid = os.fork()
        if pid == 0:
            ours.close()
            self.child(theirs, err_w)  # never returns
        theirs.close()
        os.close(err_w)
        self.spare = (pid, ours, err_r)

    def jail_argv(self, msg: dict) -> list[str]:
        """nsjail around the run's command: its base options, the run's extra mounts,
        and the run's rlimits, which nsjail sets in the child before the exec."""
        assert self.jail is not None
        argv = [f"/proc/self/fd/{self.jail_binary}", *self.jail["argv"][1:]]
        for mount in msg.get("mounts", ()):
            argv += ["--bindmount_ro", mount]
        for res, _, hard in msg["rlimits"]:
            flag = _NSJAIL_RLIMITS.get(res)
            if flag is not None:
                name, unit = flag
                argv += [f"--rlimit_{name}", str(-(-hard // unit))]  # round up
        return [*argv, "--", *msg["argv"]]

    def become_spawner(self) -> None:
        """Prepare to start runs with posix_spawn (a vfork: no copy of this server).

        The real and saved uid/gid become the slot's while the effective ones stay root, so
        POSIX_SPAWN_RESETIDS hands the child exactly the slot's uid and gid (the
        exec makes them its saved ids too). That lets processes of the slot signal
        us, and only us: as pid 1 of the namespace we receive no signal from inside
        it that we have no handler for, and we keep none.

        Our own hard rlimits become the sandbox-wide ceilings. A run starts with its
        own soft limits (we lower ours around the spawn) and gets its hard limits by
        prlimit(2) right after: only a program that raises its soft limits within
        those microseconds gains anything, and no more than these ceilings and the
        slot's cgroup allow.
        """
        assert self.uid is not None
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Python's only handler: drop it
        # Our own CPU time passes a run's soft CPU limit while we spawn it.
        signal.signal(signal.SIGXCPU, signal.SIG_IGN)
        for res, value in (
            (resource.RLIMIT_FSIZE, self.scratch_size),
            (resource.RLIMIT_CORE, 0),
            (resource.RLIMIT_MEMLOCK, 0),
            (resource.RLIMIT_MSGQUEUE, 0),
            (resource.RLIMIT_NOFILE, 1024),
            (resource.RLIMIT_NPROC, 4096),
        ):
            hard = lowered(value, self.hard_limits.get(res, resource.RLIM_INFINITY))
            resource.setrlimit(res, (hard, hard))
            self.hard_limits[res] = hard
        self.own_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        # Saved ids too: between vfork's return and the exec's new credentials the
        # child still has ours, and prlimit(2) on it must already be allowed then.
        os.setgroups([])
        os.setresgid(self.gid, 0, self.gid)
        os.setresuid(self.uid, 0, self.uid)

    def spawn(self, msg: dict, fds: list[int]) -> int:
        """Start the run's program (in nsjail mode: nsjail, which execs it in its jail)
        with posix_spawn; returns its pid, or raises OSError."""
        stdin, stdout, stderr = fds
        actions = [
            (os.POSIX_SPAWN_DUP2, stdin, 0),
            (os.POSIX_SPAWN_DUP2, stdout, 1),
            (os.POSIX_SPAWN_DUP2, stderr, 2),
            (os.POSIX_SPAWN_CLOSE, stdin),
            (os.POSIX_SPAWN_CLOSE, stdout),
            (os.POSIX_SPAWN_CLOSE, stderr),
        ]
        network = bool(msg.get("network")) and self.host_net is not None
        limits = []
        argv = msg["argv"]
        if self.jail is not None:
            # nsjail starts as root (it needs to, to build the jail) and sets the
            # run's exact rlimits itself before it executes the program.
            argv = self.jail_argv(msg)
        else:
            for res, soft, hard in msg["rlimits"]:
                cur = self.hard_limits.get(res, resource.RLIM_INFINITY)
                limits.append((res, lowered(soft, cur), lowered(hard, cur), cur))
        for res, soft, _, cur in limits:
            resource.setrlimit(res, (soft, cur))  # the child inherits these
        if network:
            setns(self.host_net, CLONE_NEWNET)  # type: ignore[arg-type]
        try:
            pid = os.posix_spawn(
                argv[0],
                argv,
                msg["env"],
                file_actions=actions,
                setsid=True,
                resetids=self.jail is None,
                # Python ignores SIGPIPE and SIGXFSZ, we ignore SIGINT and SIGXCPU;
                # ignored signals would stay ignored across exec.
                setsigdef=(signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU),
                scheduler=(os.SCHED_OTHER, os.sched_param(0)),
            )
        finally:
            if network:
                setns(self.own_net, CLONE_NEWNET)  # type: ignore[arg-type]
            for res, _, _, cur in limits:
                resource.setrlimit(res, (cur, cur))
        for res, soft, hard, _ in limits:
            with contextlib.suppress(ProcessLookupError):  # it may be done already
                resource.prlimit(pid, res, (soft, hard))
        _raise_oom_score(pid)
        return pid

    def run(self, msg: dict, fds: list[int]) -> None:
        # nsjail mode: a run that needs the host's network gets an nsjail of its own
        # (the persistent jail is in the slot's network namespace).
        self.last_in_init = self.init_binary is not None and (
            self.jail is None or not msg.get("network")
        )
        if self.last_in_init:
            self.run_in_jail(msg, fds)
            return
        if self.spawns:
            os.chdir(msg["cwd"])
            started = time.monotonic()
            try:
                pid = self.spawn(msg, fds)
            except OSError as exc:
                self.spawn_failed(f"{exc}")
                return
            finally:
                for fd in fds:
                    os.close(fd)
            self.wait(pid, started)
            return
        if msg.get("network") and self.isolated:
            # Joining the host's network namespace needs privileges the spare has
            # already dropped: this run gets a process of its own.
            self.kill_spare()
            self.prefork_network = True
            self.prefork()
            self.prefork_network = False
        elif self.spare is None:
            self.prefork()
        assert self.spare is not None
        pid, ours, err_r = self.spare
        self.spare = None
        started = time.monotonic()
        send(ours, msg, fds)
        ours.close()
        for fd in fds:
            os.close(fd)
        error = b""
        while chunk := os.read(err_r, 4096):  # EOF when exec succeeds (close-on-exec)
            error += chunk
        os.close(err_r)
        if error:
            os.waitpid(pid, 0)
            self.spawn_failed(error.decode(errors="replace"))
            return
        self.wait(pid, started)

    def run_in_jail(self, msg: dict, fds: list[int]) -> None:
        """Hand the run to the persistent jail's init (started, or restarted with
        other mounts, first), serving kills meanwhile, and report what it reports."""
        mounts = tuple(msg.get("mounts", ()))
        network = bool(msg.get("network"))
        try:
            if self.jailed is not None and (
                self.jailed.mounts != mounts
                or self.jailed.network != network
                or not self.jailed.alive()
            ):
                self.kill_all()  # the jail, and everything in it
            if self.jailed is None:
                self.jailed = self.start_jail(mounts, network)
            try:
                # The init lowers them to its own ceilings, which are ours.
                self.jailed.send_run(msg, msg["rlimits"], fds)
            except (BrokenPipeError, ConnectionResetError):
                # The jail died just now, before the run reached it: a new one.
                self.kill_all()
                self.jailed = self.start_jail(mounts, network)
                self.jailed.send_run(msg, msg["rlimits"], fds)
        except OSError as exc:
            self.spawn_failed(f"the jail failed: {exc}")
            return
        finally:
            for fd in fds:
                os.close(fd)
        jail = self.jailed
        poller = select.poll()
        poller.register(jail.sock, select.POLLIN)
        poller.register(self.sock, select.POLLIN)
        reply: dict | None = None
        while reply is None:
            for fd, _ in poller.poll():
                if fd == self.sock.fileno():
                    if self.host_request() == "kill":
                        initproto.request_kill(jail.sock)
                else:
                    reply = initproto.receive(jail.sock) or initproto.died(jail.elapsed())
                    break
        if reply.get("init_died") or reply.pop("tainted", False):
            # Only the OOM killer (the jail shares the run's memory limit and OOM
            # score) can kill the init from inside; the host reads the cgroup's OOM
            # counter to tell. An init that found itself changed exits (tainted).
            # Either way the next run gets a new jail.
            self.kill_all()
        reply.pop("ipc_left", None)  # we remove the slot's IPC objects ourselves
        send(self.sock, reply)

    def start_jail(self, mounts: tuple[str, ...], network: bool) -> PersistentJail:
        """Start the jail (by nsjail, or by ourselves in process mode) with our init
        as its pid 1, hand the init its setup, and wait for it."""
        assert self.init is not None and self.init_binary is not None
        launch: list[str] | DirectJail
        if self.jail is not None:
            launch = [f"/proc/self/fd/{self.jail_binary}", *self.jail["init"][1:]]
            for mount in mounts:
                launch += ["--bindmount_ro", mount]
            # nsjail opens the init by this path before it builds the jail.
            launch += ["--", f"/proc/self/fd/{PersistentJail.INIT_FD}"]
        else:
            base = tuple(self.init.get("mounts", ()))
            host_net = self.host_net if network else None
            launch = DirectJail(base + mounts, self.init.get("devices", ()), host_net)
        setup = initproto.encode_setup(self.uid, self.gid, bytes.fromhex(self.init["seccomp"]))
        return PersistentJail.start(launch, self.init_binary, mounts, network, setup)

    def wait(self, pid: int, started: float) -> None:
        """Wait for the run's main process (serving kills meanwhile), then end the run."""
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            poller.register(self.sock, select.POLLIN)
            done = False
            while not done:
                for fd, _ in poller.poll():
                    if fd == pidfd:
                        done = True
                    elif self.host_request() == "kill":
                        self.kill_all(main=pid)
        finally:
            os.close(pidfd)
        _, status, usage = os.wait4(pid, 0)
        wall = time.monotonic() - started
        # The run ends with its main process: whatever it left behind goes now.
        self.kill_all()
        send(
            self.sock,
            {
                "op": "exited",
                "status": status,
                "wall_time": wall,
                "utime": usage.ru_utime,
                "stime": usage.ru_stime,
                "maxrss": usage.ru_maxrss * 1024,
            },
        )

    def spawn_failed(self, reason: str) -> None:
        """The run's program could not be started: clear up and tell the host why."""
        self.kill_all()
        send(self.sock, {"op": "exited", "spawn_error": reason})

    def host_request(self) -> str | None:
        """The op of the host's next message during a run (the host gone: the run
        goes down with us, and we exit)."""
        ctl, extra = recv(self.sock)
        for fd in extra:
            os.close(fd)
        if ctl is None:
            self.kill_all()
            sys.exit(0)
        return ctl.get("op")

    def kill_all(self, main: int | None = None) -> None:
        """Kill and reap every process of the run (and the persistent jail)."""
        if self.jailed is not None:
            self.jailed.close()
            self.jailed = None
        if self.isolated:
            # As pid 1 of our namespace, kill(-1) reaches every other process in it
            # and none outside; a process forking concurrently cannot slip past it.
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)
        else:
            # Without a pid namespace: the run's session, then every descendant,
            # found through /proc (orphans re-parent to us: we are a subreaper).
            if main is not None:
                with contextlib.suppress(OSError):
                    os.killpg(main, signal.SIGKILL)
            for _ in range(100):
                descendants = _descendants(os.getpid())
                if not descendants:
                    break
                for p in descendants:
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
                _reap(block=False)
                time.sleep(0.001)
        if main is None:
            _reap(block=True)

    def kill_spare(self) -> None:
        if self.spare is not None:
            pid, ours, err_r = self.spare
            self.spare = None
            ours.close()  # the spare exits on EOF
            os.close(err_r)
            os.waitpid(pid, 0)

    def child(self, control: socket.socket, err_w: int) -> None:
        """The spare: drop privileges, wait for a command, then exec it."""
        gc.disable()  # a collection would touch (and copy) every page of the heap
        try:
            if self.prefork_network and self.host_net is not None:
                setns(self.host_net, CLONE_NEWNET)
            # Raising needs no privilege: within the slot's cgroup, the OOM killer
            # must pick the run's processes, never the server.
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
            os.setsid()
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            if self.uid is not None:
                os.setgroups([])
                os.setresgid(self.gid, self.gid, self.gid)
                os.setresuid(self.uid, self.uid, self.uid)
            # After the uid change: changing credentials clears the death signal.
            prctl.set_pdeathsig(signal.SIGKILL)
            # Python ignores these, and an ignored signal stays ignored across exec;
            # handlers (SIGINT's) are reset by exec itself.
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            msg, fds = recv(control)
            if msg is None:
                os._exit(0)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for res, soft, hard in msg["rlimits"]:
                # Lowering needs no privilege; raising a hard limit would.
                cur = self.hard_limits.get(res, resource.RLIM_INFINITY)
                resource.setrlimit(res, (lowered(soft, cur), lowered(hard, cur)))
            os.chdir(msg["cwd"])
            os.closerange(3, err_w)
            os.closerange(err_w + 1, 1 << 16)
            os.execve(msg["argv"][0], msg["argv"], msg["env"])
        except BaseException as exc:  # noqa: BLE001 - report anything, then die
            with contextlib.suppress(OSError):
                os.write(err_w, f"{type(exc).__name__}: {exc}".encode())
        os._exit(127)


class DirectJail:
    """The process sandbox's jail, built by the slot server itself (no nsjail): a
    pid namespace whose pid 1 is the jail init, in a mount namespace whose root holds
    only ``mounts`` (read-only), ``devices``, the slot's scratch mounts and a proc of
    its own. In the host's network namespace when ``host_net`` (an fd) is given."""

    def __init__(
        self, mounts: tuple[str, ...], devices: tuple[str, ...], host_net: int | None
    ) -> None:
        self.mounts = mounts
        self.devices = devices
        self.host_net = host_net

    def join_network(self) -> None:
        """The host's network namespace, if asked (before the fds are rearranged)."""
        if self.host_net is not None:
            setns(self.host_net, CLONE_NEWNET)

    def enter(self, init_fd: int) -> None:
        """In a forked child of the server: become the jail, exec the init. Never
        returns (raises on failure, for the caller to report)."""
        prctl.set_pdeathsig(signal.SIGKILL)
        unshare(CLONE_NEWPID | CLONE_NEWNS)
        pid = os.fork()
        if pid:
            # Stays outside, holding nothing but the jail's pid 1 as its child: as the
            # init's small reaper, not as a copy of this server (which, as the slot's
            # biggest process, would be what the OOM killer takes).
            os.close(PersistentJail.CONTROL_FD)  # the init's alone
            os.closerange(init_fd + 1, 1 << 20)
            os.execve(init_fd, ["codeexec-init", "--reap"], {})
        prctl.set_pdeathsig(signal.SIGKILL)
        self.build_root()
        os.closerange(PersistentJail.INIT_FD + 1, 1 << 20)
        os.execve(init_fd, ["codeexec-init"], {})

    def build_root(self) -> None:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
        new = next((p for p in ROOT_MOUNT_POINTS if os.path.isdir(p)), None)
        if new is None:
            raise OSError(errno.ENOENT, f"no mount point for the jail's root: {ROOT_MOUNT_POINTS}")
        mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=755")
        read_only = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
        for source in self.mounts:
            if os.path.isdir(source):
                os.makedirs(new + source, exist_ok=True)
                mount(source, new + source, None, MS_BIND | MS_REC)
                mount(None, new + source, None, read_only)
        for device in self.devices:
            if os.path.exists(device):
                os.makedirs(os.path.dirname(new + device), exist_ok=True)
                os.close(os.open(new + device, os.O_CREAT | os.O_WRONLY, 0o666))
                mount(device, new + device, None, MS_BIND)
                mount(None, new + device, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NOEXEC)
        for scratch in SCRATCH_MOUNTS:
            if os.path.isdir(scratch):
                os.makedirs(new + scratch, exist_ok=True)
                mount(scratch, new + scratch, None, MS_BIND | MS_REC)
        os.makedirs(new + "/proc", exist_ok=True)
        os.chdir(new)
        number = _SYS_PIVOT_ROOT.get(os.uname().machine)
        if number is None:
            raise OSError(errno.ENOSYS, f"pivot_root on {os.uname().machine}")
        # pivot_root(".", "."): the old root ends up on top of the new one, and goes.
        _check(_libc.syscall(number, b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", ctypes.c_int(MNT_DETACH)), "umount of the old root")
        os.chdir("/")
        # Our own pid namespace's proc; hidepid keeps the init (root) out of sight.
        try:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
        except OSError:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
        mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


class PersistentJail:
    """One nsjail jail kept up across runs, its init (_jailinit.c) starting each run.

    nsjail (``--mode o``) builds the jail once (a few ms of CPU, more than a whole
    ``print(1)`` run) and executes the init as pid 1 of the jail's own pid namespace;
    a run is then one message to the init, which forks and executes the program.
    Everything in the jail is a descendant of nsjail, itself our child, so the slot
    server's ``kill(-1)`` still takes the whole jail down when it must.
    """

    CONTROL_FD = 3
    INIT_FD = 4
    #: Longest the jail may take to come up.
    START_TIMEOUT = 10.0

    def __init__(
        self, pid: int, sock: socket.socket, mounts: tuple[str, ...], network: bool
    ) -> None:
        self.pid = pid
        self.sock = sock
        self.mounts = mounts
        self.network = network
        self.started = time.monotonic()
        #: The init's pidfd: nsjail holds the init's end of the socket too, so the
        #: socket reaches EOF only once nsjail noticed; the pidfd knows at once.
        self.init_pidfd: int | None = None

    @classmethod
    def start(
        cls,
        launch: list[str] | DirectJail,
        init_binary: int,
        mounts: tuple[str, ...],
        network: bool,
        setup: bytes,
    ) -> PersistentJail:
        """Start a jail: ``launch`` is nsjail's argv, or a :class:`DirectJail`."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Above any fd the child's dup2s below could overwrite.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in (theirs.fileno(), init_binary)]
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid()
                # The jail shares the run's cgroup: if the OOM killer must act, it is
                # to pick the run's biggest process, which the jail's few pages are not.
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("1000")
                for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGXCPU):
                    signal.signal(sig, signal.SIG_DFL)
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # not ours
                if isinstance(launch, DirectJail):
                    launch.join_network()
                os.dup2(high[0], cls.CONTROL_FD)
                os.dup2(high[1], cls.INIT_FD)
                if isinstance(launch, DirectJail):
                    launch.enter(cls.INIT_FD)  # never returns
                else:
                    os.execve(launch[0], launch, {})
            except BaseException as exc:  # noqa: BLE001 - tell, then die
                with contextlib.suppress(Exception):
                    print(f"codeexec: jail start failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(127)
        for fd in high:
            os.close(fd)
        theirs.close()
        jail = cls(pid, ours, mounts, network)
        with contextlib.suppress(OSError):  # it died at once: said below
            ours.send(setup)
        ready, _, _ = select.select([ours], [], [], cls.START_TIMEOUT)
        reply = initproto.receive(ours) if ready else None
        if reply != {"op": "ready"}:
            jail.close()
            raise OSError(errno.EIO, "the jail did not start its init (see the slot's stderr)")
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = f.read().split()
        if len(children) != 1:
            jail.close()
            raise OSError(errno.EIO, f"the jail has children {children}, expected its init")
        jail.init_pidfd = os.pidfd_open(int(children[0]))
        if not isinstance(launch, DirectJail):
            try:
                # nsjail's proc shows the init (root), whose counters add up every
                # earlier run: hide it, as our own jail's proc does.
                in_namespaces_of(int(children[0]), ("mnt",), hide_other_uids)
            except OSError:
                jail.close()
                raise
        return jail

    def send_run(self, msg: dict, rlimits: list[tuple[int, int, int]], fds: list[int]) -> None:
        self.started = time.monotonic()
        initproto.send_run(self.sock, msg, rlimits, fds)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def alive(self) -> bool:
        """False once the init is gone (killed from outside, say)."""
        assert self.init_pidfd is not None
        ready, _, _ = select.select([self.init_pidfd], [], [], 0)
        return not ready

    def close(self) -> None:
        """Take the jail down (its init's death ends the jail's pid namespace)."""
        self.sock.close()
        if self.init_pidfd is not None:
            os.close(self.init_pidfd)
            self.init_pidfd = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


# rlimit → (nsjail option suffix, its unit in bytes or seconds). MEMLOCK and MSGQUEUE
# have no option: the server holds them at 0 for its children to inherit.
_NSJAIL_RLIMITS = {
    resource.RLIMIT_CPU: ("cpu", 1),
    resource.RLIMIT_FSIZE: ("fsize", 1 << 20),
    resource.RLIMIT_CORE: ("core", 1 << 20),
    resource.RLIMIT_STACK: ("stack", 1 << 20),
    resource.RLIMIT_NOFILE: ("nofile", 1),
    resource.RLIMIT_NPROC: ("nproc", 1),
    resource.RLIMIT_AS: ("as", 1 << 20),
}
_RLIMITS = (
    resource.RLIMIT_CPU,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_CORE,
    resource.RLIMIT_STACK,
    resource.RLIMIT_NOFILE,
    resource.RLIMIT_MEMLOCK,
    resource.RLIMIT_MSGQUEUE,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_AS,
)
IPC_RMID = 0
# /proc/sysvipc file → the libc call that removes one of its objects by id.
_SYSV_IPC = {
    "shm": lambda ident: _libc.shmctl(ident, IPC_RMID, None),
    "sem": lambda ident: _libc.semctl(ident, 0, IPC_RMID),
    "msg": lambda ident: _libc.msgctl(ident, IPC_RMID, None),
}


def in_namespaces_of(pid: int, kinds: tuple[str, ...], action: Callable[[], None]) -> None:
    """Run ``action`` in a forked child that joined process ``pid``'s namespaces of
    these ``kinds`` ("mnt", "net", ...): setns is for good, so never in the caller."""
    fds = [os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC) for kind in kinds]
    try:
        child = os.fork()
        if child == 0:
            code = 1
            try:
                for fd in fds:
                    setns(fd, 0)  # 0: whatever kind the fd is
                action()
                code = 0
            except BaseException as exc:  # noqa: BLE001 - tell, then die
                with contextlib.suppress(Exception):
                    print(f"codeexec: in the namespaces of {pid}: {exc!r}", file=sys.stderr)
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
    finally:
        for fd in fds:
            os.close(fd)
    if status != 0:
        raise OSError(errno.EPERM, f"could not act in the namespaces of process {pid}")


def hide_other_uids(read_only: bool = True) -> None:
    """Remount this mount namespace's /proc with ``hidepid=invisible`` (read-only, as
    nsjail mounts it, unless ``read_only`` is False): a run sees no process but its
    own uid's. Meant for :func:`in_namespaces_of`."""
    flags = MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if read_only else 0)
    mount(None, "/proc", None, flags, "hidepid=invisible")


def _remove_sysv_ipc() -> None:
    """Remove every SysV shared memory segment, semaphore set and message queue of
    this IPC namespace (the slot's own)."""
    for kind, remove in _SYSV_IPC.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1:
                remove(int(fields[1]))


def lowered(value: int, limit: int) -> int:
    """``value``, but never above the hard ``limit`` we hold (raising it would need
    CAP_SYS_RESOURCE). Python shows rlimits signed: RLIM_INFINITY is -1 and any other
    negative number is above 2**63, as good as infinite."""
    return value if limit < 0 else min(value, limit)


def _raise_oom_score(pid: int) -> None:
    """Within the slot's cgroup the OOM killer must pick the run, never the server."""
    with contextlib.suppress(OSError):
        fd = os.open(f"/proc/{pid}/oom_score_adj", os.O_WRONLY)
        try:
            os.write(fd, b"1000")
        finally:
            os.close(fd)


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def _reap(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main() -> None:
    config = json.loads(sys.argv[1])
    sock = socket.socket(fileno=config["fd"])
    # Passed to us inheritable (pass_fds): no run may inherit the slot's control.
    sock.set_inheritable(False)
    root = os.geteuid() == 0
    for path in config.get("cgroup_procs", ()):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    if root:
        # Best effort (needs CAP_SYS_RESOURCE); runs raise their own score anyway.
        with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    if not config["isolated"]:
        prctl.set_child_subreaper(True)
        send(sock, {"op": "hello", "pid": os.getpid(), "warnings": []})
        Server(sock, config, None).serve()
        return
    host_net = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    unshare(
        CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP
    )
    pid = os.fork()
    if pid:
        # We stay outside the new pid namespace only to tell the host the server's
        # pid, then wait for it. If we die, it dies (pdeathsig), and so does the ns.
        send(sock, {"op": "hello", "pid": pid, "warnings": []})
        sock.close()
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    prctl.set_pdeathsig(signal.SIGKILL)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    warnings = remount_host_read_only()
    # A proc of our own pid namespace: the run sees its own processes only, and
    # hidepid keeps even the server (pid 1, root) out of sight.
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
    except OSError:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    socket.sethostname("codeexec")
    if warnings:
        send(sock, {"op": "warnings", "warnings": warnings})
    Server(sock, config, host_net).serve()


if __name__ == "__main__":
    main()
