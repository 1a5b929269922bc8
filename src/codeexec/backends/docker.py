"""The docker sandbox: runs in warm containers whose pid 1 is codeexec's init.

Every container is started once with the jail init (``_jailinit.c``, bind-mounted
read-only, so any image works) as its pid 1, connected to the host over a unix socket
in a directory bind-mounted into the container. A run is then what it is in a
persistent nsjail jail: the host writes the work files into the container's tmpfs
(through ``/proc/<init>/root``), hands the init the command and the run's stdin,
stdout and stderr (SCM_RIGHTS works across the container boundary: same kernel), and
the init forks, lowers rlimits, executes, waits, kills whatever is left (``kill(-1)``
as the container's pid 1) and removes SysV IPC objects. ``docker exec`` per run costs
4× a bare run; this costs about what a fork does.

Each run's limits are set on the container's own cgroup (memory = memory+swap, pids)
and its CPU time, memory peak and OOM kills are read from it, as for a process
sandbox slot. Between runs the host empties ``/work``, ``/tmp`` and ``/dev/shm`` and
checks that the container is clean (only the init in its cgroup, nothing in the
scratch, no IPC object left); a container that is not clean is discarded, never
reused. Containers are rotated after ``rotate_after`` runs.

Pools are per image (and per network mode): ``pool_size`` containers are kept started per
pool, a run that finds none idle starts one (up to ``slots`` per pool), idle ones past
``pool_size`` are removed after ``idle_timeout`` seconds, and a container found dead (killed
from outside) is replaced before a run is handed to it. ``oneshot=True`` makes every
run create, use and remove a container of its own instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import logging
import os
import select
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import SandboxError, SandboxUnavailableError
from .._model import cpu_count
from .._units import parse_size
from . import _cgroups, _initproto
from ._forkserver import hide_other_uids, in_namespaces_of
from ._images import build_image, connect, host_packages_digest
from ._jailinit import jail_init
from ._protocol import Capability, RunOutcome, RunRequest
from ._safefs import empty_dir, open_dir, write_files
from ._supervise import RunPipes, finish, run_rlimits, supervise
from ._together import check_together, run_all
from ._uids import UidLease, lease_uid

log = logging.getLogger(__name__)

__all__ = ["DockerSandbox"]

#: Containers run as leased uids from here up (see _uids).
DEFAULT_UID_BASE = 63_000
INIT_PATH = "/.codeexec-init"
CONTROL_DIR = "/.codeexec"
WORKDIR = "/work"
#: Emptied after every run (as seen inside the container).
SCRATCH = (WORKDIR, "/tmp", "/dev/shm")
#: Label on every container a sandbox makes: "<hostname>:<pid>:<instance>".
OWNER_LABEL = "org.codeexec.sandbox"
#: Seconds before a pool whose container failed to start tries to pre-start again.
PRESTART_BACKOFF = 30.0
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
#: The most a run may ask for; each run's own limits are set on the cgroup per run.
PIDS_CEILING = 4096


class _ContainerGone(Exception):
    """The container died before it took the run: try another."""


class _InitControl:
    """A container's init socket, as :func:`supervise` talks to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.started = time.monotonic()

    def fileno(self) -> int:
        return self.sock.fileno()

    def request_kill(self) -> None:
        _initproto.request_kill(self.sock)

    def receive(self) -> dict:
        return _initproto.receive(self.sock) or _initproto.died(time.monotonic() - self.started)


class _Container:
    """One started container: its init's socket, its cgroup, its scratch dirs."""

    def __init__(self, pool: _Pool, lease: UidLease) -> None:
        self.pool = pool
        #: Held while the container exists: its uid is no other run's on this host.
        self.lease = lease
        self.uid = lease.uid
        self.container: Any = None
        self.sock: socket.socket | None = None
        self.pid = 0
        self.cgroup: _cgroups.Slot | None = None
        #: Held open: paths through /proc/self/fd keep meaning this container's
        #: directories even if its pid is reused after it dies.
        self.scratch: dict[str, int] = {}
        self.runs = 0
        self.idle_since = time.monotonic()
        self.ipc_left = 0
        self.control_dir = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        sb = self.pool.sandbox
        self.control_dir = tempfile.mkdtemp(prefix=f"c{self.uid}-", dir=sb._control_root)
        os.chmod(self.control_dir, 0o711)  # the container's uid reaches the socket
        path = os.path.join(self.control_dir, "ctl.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            listener.bind(path)
            os.chmod(path, 0o666)
            listener.listen(1)
            self.container = sb._client.containers.run(**self.pool.create_options(self))
            self.sock = self._accept(listener)
        finally:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # nothing else may connect as the init
        # Runs become the container's uid and get the seccomp filter (see _jailinit.c).
        _initproto.send_setup(self.sock, self.uid, self.uid, sb._jail_init.seccomp)
        ready, _, _ = select.select([self.sock], [], [], sb.start_timeout)
        if not ready or _initproto.receive(self.sock) != {"op": "ready"}:
            raise SandboxError(f"the init of container {self.name} did not start")
        self.container.reload()
        self.pid = int(self.container.attrs["State"]["Pid"])
        self.cgroup = _cgroups.attach(self.pid)
        # No network means no loopback either, as in the other sandboxes: sockets a
        # run leaves on it (TIME_WAIT for a minute) would be the next run's to see,
        # and its ports the next run's to find taken. And the init (uid 0) is hidden
        # from the runs' /proc: its counters add up every earlier run's.
        _harden_container(self.pid, loopback_down=not self.pool.network)
        root = f"/proc/{self.pid}/root"
        for directory in SCRATCH:
            fd = os.open(root + directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            self.scratch[directory] = fd
        self._own_workdir()

    def _accept(self, listener: socket.socket) -> socket.socket:
        deadline = time.monotonic() + self.pool.sandbox.start_timeout
        while True:
            ready, _, _ = select.select([listener], [], [], 0.2)
            if ready:
                conn, _ = listener.accept()
                return conn
            self.container.reload()
            if self.container.status in ("exited", "dead"):
                logs = self.container.logs(tail=20).decode(errors="replace").strip()
                raise SandboxError(f"container {self.name} exited at start: {logs}")
            if time.monotonic() > deadline:
                raise SandboxError(f"the init of container {self.name} did not connect")

    @property
    def name(self) -> str:
        return self.container.short_id if self.container is not None else "(not created)"

    def path(self, directory: str) -> str:
        """A scratch directory of the container, as the host reaches it."""
        return f"/proc/self/fd/{self.scratch[directory]}"

    def open_workdir(self) -> int:
        """The container's /work, for host-side file operations (see _safefs)."""
        return open_dir(self.path(WORKDIR))

    def _own_workdir(self) -> None:
        work = self.path(WORKDIR)
        os.chown(work, self.uid, self.uid)
        os.chmod(work, 0o700)

    def alive(self) -> bool:
        """False if the init is gone (its socket is at EOF): killed from outside."""
        if self.sock is None:
            return False
        ready, _, _ = select.select([self.sock], [], [], 0)
        return not ready  # the init never speaks unasked: readable means EOF

    def destroy(self) -> None:
        """Remove the container and everything the host kept for it."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for fd in self.scratch.values():
            os.close(fd)
        self.scratch = {}
        if self.cgroup is not None:
            self.cgroup.close()
            self.cgroup = None
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.remove(force=True)
            self.container = None
        if self.control_dir:
            shutil.rmtree(self.control_dir, ignore_errors=True)
            self.control_dir = ""
        # Only now that nothing can run under it any more.
        self.lease.release()

    # ------------------------------------------------------------------ one run

    def run(self, request: RunRequest) -> RunOutcome:
        assert self.sock is not None and self.cgroup is not None
        limits = request.limits
        try:
            workdir = self.open_workdir()
            try:
                write_files(workdir, request.files, self.uid)
            finally:
                os.close(workdir)
        except OSError as exc:
            return RunOutcome(error=f"could not write the work files: {exc}")
        with RunPipes(request.stdin, request.stdio) as pipes:
            try:
                # The init is the only other process in the group. A run gets at most
                # the container's memory ceiling (a compile step's 1 GiB may not fit).
                self.cgroup.set_limits(
                    limits.memory, limits.pids + 1, ceiling=self.pool.sandbox.memory_ceiling
                )
                self.cgroup.begin()
                env = {"HOME": WORKDIR, **request.env}
                msg = {"cwd": WORKDIR, "argv": list(request.argv), "env": env}
                rlimits = run_rlimits(limits, nproc_extra=1, cgroup=True)
                try:
                    _initproto.send_run(self.sock, msg, rlimits, pipes.child)
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ECONNREFUSED):
                        raise _ContainerGone(str(exc)) from exc
                    raise
            finally:
                pipes.handed()
            control = _InitControl(self.sock)
            seen = supervise(request, pipes.out_r, pipes.err_r, control, self.cgroup)
        self.runs += 1
        result = finish(request, seen, self.cgroup, self.open_workdir)
        self.ipc_left = seen.exited.get("ipc_left", 0)
        if seen.exited.get("init_died") or seen.exited.get("tainted"):
            self.ipc_left = -1  # never reused
        return result

    def clean(self) -> str:
        """Empty the scratch and check the container is as it started: "" if it is,
        else why not (then it must be discarded)."""
        if self.ipc_left:
            return "the init died, was changed, or left SysV IPC objects"
        if not self.alive():
            return "the init is gone"
        for directory in SCRATCH:
            base = self.path(directory)
            empty_dir(base)
            if os.listdir(base):
                return f"{directory} could not be emptied"
        self._own_workdir()
        assert self.cgroup is not None
        with open(self.cgroup.procs_files[0]) as f:
            procs = f.read().split()
        if procs != [str(self.pid)]:
            return f"processes besides the init are left: {procs}"
        return ""


class _Pool:
    """Warm containers of one image and network mode."""

    def __init__(self, sandbox: DockerSandbox, image: str, network: bool) -> None:
        self.sandbox = sandbox
        self.image = image
        self.network = network
        self.idle: deque[_Container] = deque()
        self.size = 0  # started or starting, idle or busy
        self.cond = threading.Condition()
        #: After a failed pre-start, not before this (a broken image must not make the
        #: maintainer start containers in a loop).
        self.retry_at = 0.0

    def create_options(self, container: _Container) -> dict[str, Any]:
        import docker.types

        sb = self.sandbox
        ceiling = sb.memory_ceiling
        options: dict[str, Any] = {
            "image": self.image,
            "entrypoint": [INIT_PATH],
            # The init is the only process of the container's cgroup besides the run's:
            # it lowers its OOM score to 0 (the runs' is 1000).
            "command": ["--lower-oom-score", "--connect", f"{CONTROL_DIR}/ctl.sock"],
            # The init is not the runs' uid, so no run can reconfigure it: uid 0 with
            # only what it needs to start runs as the container's uid (which drops
            # every capability) and to kill what they leave.
            "user": "0:0",
            "detach": True,
            "read_only": True,
            "cap_drop": ["ALL"],
            "cap_add": ["SETUID", "SETGID", "SETPCAP", "KILL"],
            "security_opt": ["no-new-privileges"],
            "mem_limit": ceiling,
            "memswap_limit": ceiling,
            "mem_swappiness": 0,
            "pids_limit": PIDS_CEILING,
            "nano_cpus": int(sb.cpus * 1e9),
            "oom_score_adj": 1000,  # the run is what the OOM killer takes, not the host
            "tmpfs": {
                WORKDIR: f"size={sb.scratch_size},mode=0700,exec",
                "/tmp": f"size={sb.scratch_size},mode=1777,exec",
            },
            "shm_size": sb.scratch_size,
            "ipc_mode": "private",
            "volumes": {
                sb._jail_init.path: {"bind": INIT_PATH, "mode": "ro"},
                container.control_dir: {"bind": CONTROL_DIR, "mode": "ro"},
            },
            "ulimits": [
                docker.types.Ulimit(name="core", soft=0, hard=0),
                docker.types.Ulimit(name="nofile", soft=4096, hard=4096),
                docker.types.Ulimit(name="nproc", soft=PIDS_CEILING, hard=PIDS_CEILING),
            ],
            "environment": {},
            "working_dir": WORKDIR,
            "hostname": "codeexec",
            "labels": {OWNER_LABEL: sb._owner},
            "stop_signal": "SIGKILL",
        }
        if self.network:
            options["network_mode"] = "host"  # what the process sandbox gives too
        else:
            # Only loopback, and faster to start than network_mode="none".
            options["network_disabled"] = True
        return options

    def acquire(self) -> _Container:
        """A clean, live container: an idle one, or one started now."""
        sb = self.sandbox
        while True:
            container: _Container | None = None
            with self.cond:
                while True:
                    if sb._closed:
                        raise SandboxError("the docker sandbox is closed")
                    if self.idle and not sb.oneshot:
                        container = self.idle.pop()  # the warmest first
                        break
                    if self.size < sb.slots:
                        self.size += 1
                        break
                    self.cond.wait()
            if container is None:
                return self._start()
            if container.alive():
                return container
            log.info("docker: container %s died while idle; replacing it", container.name)
            self.discard(container)

    def _start(self) -> _Container:
        try:
            lease = lease_uid(self.sandbox._uid_base)
        except BaseException:
            self.discard(None)
            raise
        container = _Container(self, lease)
        try:
            container.start()
            if self.sandbox._closed:  # closed meanwhile: close() may not have seen it
                raise SandboxError("the docker sandbox is closed")
        except BaseException:
            self.discard(container)
            raise
        return container

    def release(self, container: _Container) -> None:
        """After a run: back to idle if clean and not due for rotation, else removed."""
        sb = self.sandbox
        why = "one-shot" if sb.oneshot else ""
        if not why and container.runs >= sb.rotate_after:
            why = "rotated"
        if not why:
            try:
                why = container.clean()
            except Exception as exc:  # noqa: BLE001 - whatever the run left, never reuse it
                why = f"cleaning failed: {exc}"
            if why:
                log.warning("docker: %s is not clean (%s); discarded", container.name, why)
        if why:
            self.discard(container)
            return
        container.idle_since = time.monotonic()
        with self.cond:
            self.idle.append(container)
            self.cond.notify()

    def discard(self, container: _Container | None) -> None:
        """Remove a container (in the background: ``docker rm`` takes a while), or
        give up the place of one that was never made (None)."""
        with self.cond:
            self.size -= 1
            self.cond.notify()
        if container is not None:
            self.sandbox._dispose(container)

    def maintain(self) -> None:
        """Keep ``pool_size`` containers started; remove idle ones past it after a while."""
        sb = self.sandbox
        if sb.oneshot or time.monotonic() < self.retry_at:
            return
        expired = []
        with self.cond:
            now = time.monotonic()
            while len(self.idle) > sb.pool_size and now - self.idle[0].idle_since > sb.idle_timeout:
                expired.append(self.idle.popleft())
            missing = max(0, sb.pool_size - self.size)
            self.size += missing
        for container in expired:
            self.discard(container)
        for started in range(missing):
            try:
                container = self._start()
            except Exception as exc:  # noqa: BLE001 - logged; the next run will say why
                log.warning("docker: could not pre-start a container of %s: %s", self.image, exc)
                self.retry_at = time.monotonic() + PRESTART_BACKOFF
                with self.cond:
                    self.size -= missing - started - 1  # those not even tried
                    self.cond.notify_all()
                return
            container.idle_since = time.monotonic()
            with self.cond:
                self.idle.append(container)
                self.cond.notify()

    def drain(self) -> list[_Container]:
        with self.cond:
            idle = list(self.idle)
            self.idle.clear()
            self.cond.notify_all()
        return idle


class DockerSandbox:
    """Runs programs in warm Docker containers, each run in a clean one.

    :param image: the image for every run (any image; the init is mounted into it).
    :param images: language name → image, for runs of that language.
        Runs whose language has no image get one built from this host's toolchains
        (:func:`codeexec.backends.build_image`), once, when first needed.
    :param slots: runs at once (default: one per core); also the most containers a
        pool starts.
    :param pool_size: containers kept started per image, ready for the next run (the
        pool grows up to ``slots`` while runs wait, and shrinks back when idle).
    :param rotate_after: a container is replaced after this many runs.
    :param idle_timeout: idle containers beyond ``pool_size`` are removed after this long.
    :param oneshot: every run in a container of its own, created and removed for it.
    :param scratch_size: size of each container's tmpfs ``/work``, ``/tmp``, ``/dev/shm``.
    :param cpus: CPU quota of each container, in cores.
    :param memory_ceiling: the containers' memory limit (= memory + swap) as Docker
        creates them; each run's own limit replaces it on the container's cgroup for
        that run.
    :param uid_base: containers run as uids from ``uid_base`` up, each leased host-wide
        (see :mod:`._uids`), so per-uid limits and rights never mix two runs, even of
        two sandboxes or processes.
    :param client: a ``docker.DockerClient`` (default: ``docker.from_env()``).
    """

    name = "docker"

    def __init__(
        self,
        *,
        image: str | None = None,
        images: Mapping[str, str] | None = None,
        slots: int | None = None,
        pool_size: int = 1,
        rotate_after: int = 100,
        idle_timeout: float = 60.0,
        oneshot: bool = False,
        scratch_size: int | str = "256M",
        cpus: float = 1.0,
        memory_ceiling: int | str = "4G",
        uid_base: int = DEFAULT_UID_BASE,
        start_timeout: float = 30.0,
        client: Any = None,
    ) -> None:
        if os.geteuid() != 0:
            raise SandboxUnavailableError(
                "docker", "needs root (the containers' cgroups and scratch dirs)"
            )
        self.slots = cpu_count() if slots is None else slots
        for name, value in (("slots", self.slots), ("rotate_after", rotate_after)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        if pool_size < 0 or pool_size > self.slots:
            raise ValueError(f"pool_size must be between 0 and slots ({self.slots})")
        if not 0 < cpus <= (os.cpu_count() or 1):
            raise ValueError(f"cpus must be above 0 and at most {os.cpu_count()} (this host's)")
        self.pool_size = 0 if oneshot else pool_size
        self.rotate_after = rotate_after
        self.idle_timeout = idle_timeout
        self.oneshot = oneshot
        self.scratch_size = parse_size(scratch_size, what="scratch_size")
        self.memory_ceiling = parse_size(memory_ceiling, what="memory_ceiling")
        self.cpus = cpus
        self.start_timeout = start_timeout
        self._uid_base = uid_base
        self._client = client or connect()
        info = self._client.info()
        self._daemon = str(info.get("ServerVersion", "?"))
        self._missing: dict[str, str] = {}
        if not any("seccomp" in str(o) for o in info.get("SecurityOptions", [])):
            self._missing[Capability.SECCOMP] = "the Docker daemon runs without seccomp"
        try:
            # The runs' seccomp filter comes on top of the daemon's profile.
            self._jail_init = jail_init()
        except (OSError, SandboxUnavailableError) as exc:
            raise SandboxUnavailableError("docker", f"the containers' init: {exc}") from exc
        self._image = image
        self._images = dict(images or {})
        # Named images must be here already: nothing is pulled.
        self._image_ids = {}
        for named in {i for i in [image, *self._images.values()] if i}:
            self._image_ids[named] = self._image_id(named)
        self._built: dict[str, str] = {}
        # Images built here on demand are made of the host's packages: their versions
        # stand for those images' digests in the fingerprint.
        self._host_digest = "" if image is not None else (host_packages_digest() or "no-dpkg")
        self._build_lock = threading.Lock()
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._control_root = tempfile.mkdtemp(prefix="codeexec-docker-")
        os.chmod(self._control_root, 0o711)
        self._pools: dict[tuple[str, bool], _Pool] = {}
        self._pools_lock = threading.Lock()
        self._slot_sem = threading.BoundedSemaphore(self.slots)
        #: Held while taking several slots at once (see run_together).
        self._together = threading.Lock()
        self._closed = False
        self._disposals: deque[_Container] = deque()
        self._wake = threading.Event()
        self._remove_stale()
        self._maintainer = threading.Thread(
            target=self._maintain, name="codeexec-docker-pools", daemon=True
        )
        self._maintainer.start()

    # ------------------------------------------------------------------ protocol

    @property
    def version(self) -> str:
        named = ",".join(f"{k}={v[7:19]}" for k, v in sorted(self._image_ids.items()))
        built = f" host-built-{self._host_digest}" if self._image is None else ""
        return (
            f"docker/1 daemon-{self._daemon} init-{self._jail_init.digest} cpus-{self.cpus}"
            # Both decide whether a program fits: its files, and its memory at most.
            f" scratch-{self.scratch_size} ceiling-{self.memory_ceiling}"
            f" images[{named}]{built}"
        )

    @property
    def capabilities(self) -> frozenset[str]:
        everything = Capability.ISOLATION | {Capability.NETWORK_OPTIONAL, Capability.SECCOMP}
        return frozenset(everything - set(self._missing))

    @property
    def missing(self) -> Mapping[str, str]:
        return dict(self._missing)

    @property
    def concurrency(self) -> int:
        return self.slots

    def pools(self) -> list[dict[str, Any]]:
        """Each pool's image, network mode, size (started or starting, idle or busy)
        and the ids of its idle containers (for operators and tests)."""
        with self._pools_lock:
            pools = list(self._pools.values())
        out = []
        for pool in pools:
            with pool.cond:
                out.append(
                    {
                        "image": pool.image,
                        "network": pool.network,
                        "size": pool.size,
                        "idle": [c.container.id for c in pool.idle],
                    }
                )
        return out

    def warm(self, languages: tuple[str, ...] = ()) -> None:
        """Start the pools of these languages' images now (default: the languages
        given ``images``, or the one ``image``), rather than at their first runs."""
        for language in languages or tuple(self._images) or (("",) if self._image else ()):
            self._pool(self._image_for(language), False).maintain()

    def run(self, request: RunRequest) -> RunOutcome:
        """Run one program in a clean container (waiting for a slot) and measure it."""
        if self._closed:
            raise SandboxError("the docker sandbox is closed")
        if not request.argv or not request.argv[0]:
            raise SandboxError("argv is empty")
        with self._slot_sem:
            return self._run_in_container(request)

    def run_together(self, requests: Sequence[RunRequest]) -> list[RunOutcome]:
        """Run these programs at the same time, each in a container of its own (their
        slots taken all at once: two callers never hold one each and wait)."""
        taken = 0
        try:
            if self._closed:
                raise SandboxError("the docker sandbox is closed")
            check_together(requests, self.concurrency, self.name)
            with self._together:
                for _ in requests:
                    self._slot_sem.acquire()
                    taken += 1
            runs = [functools.partial(self._run_in_container, r) for r in requests]
            return run_all(runs, requests)
        finally:
            for request in requests:
                if request.stdio is not None:
                    request.stdio.close()
            for _ in range(taken):
                self._slot_sem.release()

    def _run_in_container(self, request: RunRequest) -> RunOutcome:
        """One run in a clean container of its image's pool, in a slot already taken."""
        try:
            image = self._image_for(request.language)
        except SandboxUnavailableError as exc:
            return RunOutcome(error=f"no image for {request.language or 'this run'}: {exc}")
        pool = self._pool(image, request.limits.network)
        # A container that died before its run is replaced, unless the run's stdio
        # (pipes to another run) went with that attempt.
        for _ in range(1 if request.stdio is not None else 3):
            try:
                container = pool.acquire()
            except (OSError, SandboxError, _docker_errors()) as exc:
                return RunOutcome(error=f"could not start a container: {exc}")
            try:
                result = container.run(request)
            except _ContainerGone as exc:
                log.info("docker: container %s died before its run: %s", container.name, exc)
                pool.discard(container)
                continue
            except Exception as exc:  # noqa: BLE001 - the run fails, never the pool
                pool.discard(container)
                log.warning("docker: run in %s failed: %s", container.name, exc, exc_info=True)
                return RunOutcome(error=f"sandbox failure: {exc}")
            except BaseException:
                pool.discard(container)
                raise
            pool.release(container)
            return result
        return RunOutcome(error="containers kept dying before the run could start")

    def close(self) -> None:
        """Remove every container this sandbox made."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._maintainer.join(timeout=30)
        with self._pools_lock:
            pools = list(self._pools.values())
        for pool in pools:
            for container in pool.drain():
                container.destroy()
        while self._disposals:
            self._disposals.popleft().destroy()
        # Busy containers of runs still going, and any the bookkeeping lost.
        self._remove_stale(mine=True)
        shutil.rmtree(self._control_root, ignore_errors=True)

    def __enter__(self) -> DockerSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DockerSandbox(slots={self.slots}, {self.version})"

    # ------------------------------------------------------------------ internals

    def _image_id(self, name: str) -> str:
        import docker.errors

        try:
            return str(self._client.images.get(name).id)
        except docker.errors.ImageNotFound as exc:
            raise SandboxUnavailableError(
                "docker",
                f"image {name!r} is not on this host (nothing is pulled; build one with"
                " `codeexec image build LANGUAGE`)",
            ) from exc

    def _image_for(self, language: str) -> str:
        if language in self._images:
            return self._images[language]
        if self._image is not None:
            return self._image
        with self._build_lock:
            if language not in self._built:
                try:
                    self._built[language] = build_image(
                        [language] if language else [], client=self._client
                    )
                except (OSError, ValueError, _docker_errors()) as exc:
                    raise SandboxUnavailableError("docker", f"image build failed: {exc}") from exc
            return self._built[language]

    def _pool(self, image: str, network: bool) -> _Pool:
        with self._pools_lock:
            pool = self._pools.get((image, network))
            if pool is None:
                pool = self._pools[(image, network)] = _Pool(self, image, network)
                self._wake.set()  # warm it up
            return pool

    def _dispose(self, container: _Container) -> None:
        self._disposals.append(container)
        self._wake.set()

    def _maintain(self) -> None:
        while not self._closed:
            while self._disposals:
                container = self._disposals.popleft()
                container.destroy()
            with self._pools_lock:
                pools = list(self._pools.values())
            for pool in pools:
                if self._closed:
                    return
                try:
                    pool.maintain()
                except Exception:  # noqa: BLE001 - the thread must survive anything
                    log.exception("docker: maintaining the pool of %s", pool.image)
            self._wake.wait(timeout=1.0)
            self._wake.clear()

    def _remove_stale(self, mine: bool = False) -> None:
        """Remove containers this sandbox made (``mine``), or ones a dead process on
        this host left behind."""
        host = socket.gethostname()
        try:
            found = self._client.containers.list(all=True, filters={"label": OWNER_LABEL})
        except _docker_errors() as exc:
            log.warning("docker: could not list containers: %s", exc)
            return
        for container in found:
            owner = container.labels.get(OWNER_LABEL, "")
            name, _, rest = owner.partition(":")
            pid = int(rest.partition(":")[0] or 0)
            if (mine and owner == self._owner) or (
                not mine and name == host and pid and not _pid_alive(pid)
            ):
                with contextlib.suppress(Exception):
                    container.remove(force=True)


def _harden_container(pid: int, *, loopback_down: bool) -> None:
    """In the namespaces of container process ``pid``: its /proc remounted with
    ``hidepid=invisible`` (read-write: the init sets each run's OOM score there) and,
    if asked, its loopback interface down."""

    def harden() -> None:
        hide_other_uids(read_only=False)
        if loopback_down:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                request = struct.pack("16sH14x", b"lo", 0)
                up = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", up & ~IFF_UP))

    try:
        in_namespaces_of(pid, ("mnt", "net"), harden)
    except OSError as exc:
        raise SandboxError(f"could not harden container process {pid}: {exc}") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _docker_errors() -> type[Exception]:
    import docker.errors

    return docker.errors.DockerException
