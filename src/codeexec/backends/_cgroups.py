"""Per-slot control groups: limits, accounting and the OOM flag, on cgroup v1 or v2.

A sandbox owns one *instance* group (``codeexec-<pid>-<random>``, created under this
process's own cgroup so the host's limits on us still apply) and one *slot* group per
concurrent run inside it. A slot's group is made once and reused for every run in that
slot: joining a cgroup can cost 8–16 ms after an idle period (the kernel waits for an
RCU grace period), so processes are born inside it (forked by a server that joined once)
instead of migrating into it per run.

Per run, :meth:`Slot.begin` resets the peak counters and :meth:`Slot.end` reads CPU time
(all processes of the run, including orphans), the memory peak, and whether the OOM
killer struck. Both hierarchies are plain files, held open per slot (v1 the per-controller
ones, v2 the unified ones): a library over them would add a layer and no checks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable

import attrs

log = logging.getLogger(__name__)

__all__ = ["CgroupUsage", "Cgroups", "Slot", "describe", "detect"]

_PREFIX = "codeexec-"
#: Memory a slot may hold between runs above the least it ever held (its resident
#: processes) before the host reclaims it: cache the last run left must not count
#: as the next run's baseline, or one run could raise the next one's limit.
RECLAIM_SLACK = 4 << 20
#: However much cannot be reclaimed, a run's limit is never more than this above
#: that least baseline.
BASELINE_CEILING = 16 << 20
#: Seconds between samples of memory.current where the kernel keeps no per-run peak.
SAMPLE_INTERVAL = 0.005
#: How near its limit a group's memory counts as meeting it: the kernel charges in
#: per-CPU batches of 64 pages, so a group pinned at its limit reads a little under.
#: Never more than an eighth of what the run itself may use (a 2 MiB limit).
AT_LIMIT_SLACK = 2 << 20


@attrs.frozen
class CgroupUsage:
    """What a slot measured over one run."""

    cpu_time: float  # seconds, every process of the run
    memory_peak: int  # bytes above the slot's baseline
    oom_killed: bool  # the OOM killer killed a process of the run
    memory_limit_hit: bool  # an allocation failed or had to reclaim at the limit
    #: memory_peak is the largest of samples taken during the run (a lower bound; see
    #: the v2 slot), not a peak the kernel kept.
    peak_sampled: bool = False


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, options) of every cgroup file system we can see."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] in ("cgroup", "cgroup2"):
                found.append((parts[1], parts[2], set(parts[3].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """Controller (or '' for v2) → this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if not controllers:
                paths[""] = path
            for controller in controllers.split(","):
                if controller:
                    paths[controller] = path
    return paths


def _write(path: str, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read().split()[0])


def _kill_members(path: str) -> None:
    """SIGKILL every process in the group ``path`` and below, so it can be removed:
    ``cgroup.kill`` where there is one (v2, Linux 5.14+), else each pid listed."""
    kill_file = os.path.join(path, "cgroup.kill")
    if os.path.exists(kill_file):
        with contextlib.suppress(OSError):
            _write(kill_file, 1)
            return
    for _ in range(20):  # a process may fork while we kill: list again until empty
        pids = []
        for root, _dirs, files in os.walk(path):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError), open(os.path.join(root, "cgroup.procs")) as f:
                    pids += [int(line) for line in f if line.strip()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _remove_tree(path: str) -> None:
    """Kill what is left in a cgroup directory, then rmdir it and its children
    (deepest first); no files to delete."""
    if not os.path.isdir(path):
        return
    _kill_members(path)
    for root, dirs, _ in os.walk(path, topdown=False):
        for d in dirs:
            _try_rmdir(os.path.join(root, d))
    _try_rmdir(path)


def _try_rmdir(path: str) -> None:
    for attempt in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY: a dying process still holds it for a moment
            if attempt == 49:
                log.warning("could not remove cgroup %s", path)
                return
            time.sleep(0.01)


def _sweep_stale(parent: str) -> None:
    """Remove instance groups left by processes that died without closing."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid = name[len(_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _remove_tree(os.path.join(parent, name))


class Slot:
    """One reusable cgroup (one per controller on v1) that runs happen in."""

    #: cgroup.procs files a process writes its pid into to join this slot.
    procs_files: tuple[str, ...]

    @property
    def directories(self) -> tuple[str, ...]:
        """The group's directories (one per controller on v1)."""
        return tuple(os.path.dirname(f) for f in self.procs_files)

    #: The least the group has held before a run (its resident processes alone).
    _floor: int | None = None

    def _baseline_for_run(self, usage: Callable[[], int]) -> int:
        """What the group holds before a run, less what earlier runs left behind.

        Memory above the resident floor (cache the last run charged here, say) is
        reclaimed first; what cannot be is not given to the run on top of its limit.
        """
        held = usage()
        if self._floor is None or held < self._floor:
            self._floor = held
        if held > self._floor + RECLAIM_SLACK:
            self._reclaim(self._floor)
            held = usage()
        return min(held, self._floor + BASELINE_CEILING)

    def _reclaim(self, target: int) -> None:
        """Ask the kernel to bring the group down to ``target`` bytes, if it can."""

    def set_limits(self, memory: int, pids: int, ceiling: int | None = None) -> None:
        """The next run's limits: ``memory`` bytes above what the group holds now (its
        resident processes and cache), but never more than ``ceiling`` in all (a docker
        container's own limit, which the group cannot exceed); ``pids`` tasks in all
        (residents included)."""
        raise NotImplementedError

    def begin(self) -> None:
        raise NotImplementedError

    def cpu_time(self) -> float:
        """Seconds of CPU used since :meth:`begin`, cheap enough to poll."""
        raise NotImplementedError

    #: How near the limit counts as at it, for the run's limit (see AT_LIMIT_SLACK).
    _slack = AT_LIMIT_SLACK

    def _set_slack(self, memory: int) -> None:
        self._slack = min(AT_LIMIT_SLACK, memory // 8)

    def at_limit(self) -> bool:
        """Whether the group's memory meets its limit now (within
        :data:`AT_LIMIT_SLACK`)."""
        raise NotImplementedError

    #: Seconds between :meth:`sample` calls the supervisor should make during a run
    #: (None: the group measures its own peak and needs no samples).
    sample_interval: float | None = None

    def sample(self) -> None:
        """Note the group's memory now (where the kernel keeps no per-run peak)."""

    def end(self) -> CgroupUsage:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of the group without removing it (someone else's, a container's)."""
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError


class Cgroups:
    """An instance group; makes slots. Use :func:`detect` to get one."""

    version: int

    def slot(self, name: str) -> Slot:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------- v1


class _Counter:
    """A cgroup file held open: read and written with pread/pwrite at offset 0.

    About 1 µs a read, against 25 µs for open+read+close: these are read and reset
    on every run, on the critical path.
    """

    def __init__(self, path: str, writable: bool = False) -> None:
        self.fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)

    def read(self) -> bytes:
        return os.pread(self.fd, 4096, 0)

    def value(self) -> int:
        return int(self.read().split()[0])

    def keyed(self) -> dict[bytes, int]:
        return {
            k: int(v) for k, _, v in (line.partition(b" ") for line in self.read().splitlines())
        }

    def write(self, value: int) -> None:
        os.pwrite(self.fd, str(value).encode(), 0)

    def close(self) -> None:
        os.close(self.fd)


class _SlotV1(Slot):
    def __init__(self, dirs: dict[str, str]) -> None:
        self._dirs = dirs
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
        mem = dirs["memory"]
        # No swapping inside the limit (not in the root memory cgroup, nor on every
        # kernel): a run's memory is RAM, as its verdict assumes.
        with contextlib.suppress(OSError), open(os.path.join(mem, "memory.swappiness"), "w") as f:
            f.write("0")
        self._has_memsw = os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
        self._usage = _Counter(os.path.join(mem, "memory.usage_in_bytes"))
        self._limit_file = _Counter(os.path.join(mem, "memory.limit_in_bytes"), True)
        self._max_usage = _Counter(os.path.join(mem, "memory.max_usage_in_bytes"), True)
        self._failcnt = _Counter(os.path.join(mem, "memory.failcnt"), True)
        self._oom_control = _Counter(os.path.join(mem, "memory.oom_control"))
        self._cpu = _Counter(os.path.join(dirs["cpuacct"], "cpuacct.usage"), True)
        self._pids_max = _Counter(os.path.join(dirs["pids"], "pids.max"), True)
        self._counters = [
            self._usage,
            self._limit_file,
            self._max_usage,
            self._failcnt,
            self._oom_control,
            self._cpu,
            self._pids_max,
        ]
        if self._has_memsw:
            self._memsw_limit = _Counter(os.path.join(mem, "memory.memsw.limit_in_bytes"), True)
            self._memsw_max = _Counter(os.path.join(mem, "memory.memsw.max_usage_in_bytes"), True)
            self._counters += [self._memsw_limit, self._memsw_max]
        self.procs_files = tuple(os.path.join(d, "cgroup.procs") for d in dirs.values())
        self._limit: int | None = None
        self._pids: int | None = None
        self._oom_before = 0
        self._baseline = 0

    def _reclaim(self, target: int) -> None:
        # Lowering the limit makes the kernel reclaim down to it (page cache, which
        # is what runs leave); EBUSY when it cannot, never an OOM kill.
        with contextlib.suppress(OSError):
            self._limit_file.write(target)
            self._limit = target

    def set_limits(self, memory: int, pids: int, ceiling: int | None = None) -> None:
        # The slot's server process lives here too; its few pages are part of the
        # baseline, so the run gets the whole limit on top of it.
        self._set_slack(memory)
        limit = memory + self._baseline_for_run(self._usage.value)
        if ceiling is not None:
            limit = min(limit, ceiling)
        if limit != self._limit:
            # memsw must stay >= limit at every step, so the order depends on direction.
            if self._has_memsw and self._limit is not None and limit > self._limit:
                self._memsw_limit.write(limit)
                self._limit_file.write(limit)
            else:
                self._limit_file.write(limit)
                if self._has_memsw:
                    self._memsw_limit.write(limit)
            self._limit = limit
        if pids != self._pids:
            self._pids_max.write(pids)
            self._pids = pids

    def begin(self) -> None:
        self._cpu.write(0)
        self._max_usage.write(0)
        if self._has_memsw:
            self._memsw_max.write(0)
        self._failcnt.write(0)
        self._baseline = self._usage.value()
        self._oom_before = self._oom_control.keyed().get(b"oom_kill", 0)

    def cpu_time(self) -> float:
        return self._cpu.value() / 1e9

    def _meets_limit(self, usage: int) -> bool:
        return self._limit is not None and usage >= self._limit - self._slack

    def at_limit(self) -> bool:
        return self._meets_limit(self._usage.value())

    def end(self) -> CgroupUsage:
        peak = self._max_usage.value()
        if self._has_memsw:
            peak = max(peak, self._memsw_max.value())
        # Kernels since 6.15 no longer count failcnt (it stays 0): a peak at the limit
        # says the same.
        limit_hit = self._failcnt.value() > 0 or self._meets_limit(peak)
        # What the slot held before the run includes the pre-forked process that
        # became the run's program (its pages were freed at exec): what is left after
        # the run is the better baseline when it is lower.
        baseline = min(self._baseline, self._usage.value())
        return CgroupUsage(
            cpu_time=self.cpu_time(),
            memory_peak=max(0, peak - baseline),
            oom_killed=self._oom_control.keyed().get(b"oom_kill", 0) > self._oom_before,
            memory_limit_hit=limit_hit,
        )

    def close(self) -> None:
        for counter in self._counters:
            counter.close()
        self._counters = []

    def remove(self) -> None:
        self.close()
        for d in self._dirs.values():
            _try_rmdir(d)


class _CgroupsV1(Cgroups):
    version = 1
    CONTROLLERS = ("memory", "pids", "cpuacct")

    def __init__(self, mounts: dict[str, str]) -> None:
        own = _own_paths()
        name = f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._dirs = {}
        for controller in self.CONTROLLERS:
            parent = os.path.join(mounts[controller], own.get(controller, "/").lstrip("/"))
            _sweep_stale(parent)
            self._dirs[controller] = os.path.join(parent, name)
            os.mkdir(self._dirs[controller])
        # Children inherit the parent's use_hierarchy; accounting must be hierarchical
        # for limits to hold over nested groups a program cannot create anyway.
        self._slots: list[Slot] = []

    def slot(self, name: str) -> Slot:
        slot = _SlotV1({c: os.path.join(d, name) for c, d in self._dirs.items()})
        self._slots.append(slot)
        return slot

    def remove(self) -> None:
        for slot in self._slots:
            slot.remove()
        for d in self._dirs.values():
            _remove_tree(d)


# ---------------------------------------------------------------------------- v2


class _SlotV2(Slot):
    """A v2 group: ``memory.max`` (swap 0), ``pids.max``, ``cpu.stat`` and
    ``memory.events``, files held open where they are read on every run.

    The run's memory peak: ``memory.peak`` reset per run where the kernel allows it
    (Linux 6.12+); else the group's lifetime ``memory.peak`` when the run passed the
    earlier runs' peak (then it is the run's own); else the largest ``memory.current``
    sampled while the run ran (every :data:`SAMPLE_INTERVAL`, a lower bound of the
    true peak, within a few MiB for anything that holds its memory a few ms).
    """

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self._path = path
        self.procs_files = (os.path.join(path, "cgroup.procs"),)
        # Held open, as on v1: read (or written) on every run, on the critical path.
        self._current_fd = _Counter(self._file("memory.current"))
        self._cpu_stat = _Counter(self._file("cpu.stat"))
        self._events = _Counter(self._file("memory.events"))
        self._memory_max = _Counter(self._file("memory.max"), writable=True)
        self._pids_max = _Counter(self._file("pids.max"), writable=True)
        self._counters = [
            self._current_fd,
            self._cpu_stat,
            self._events,
            self._memory_max,
            self._pids_max,
        ]
        self._peak_fd: int | None = None
        self._has_peak = os.path.exists(self._file("memory.peak"))  # Linux 5.19+
        self._cpu_before = 0
        self._oom_before = 0
        self._max_before = 0
        self._peak_before = 0
        self._peak_resettable = False
        self._sampled = 0
        self._baseline = 0
        self._has_swap = os.path.exists(os.path.join(path, "memory.swap.max"))
        self._swap_off = False
        self._max = 1 << 62  # memory.max as set_limits last wrote it

    def _file(self, name: str) -> str:
        return os.path.join(self._path, name)

    def _current(self) -> int:
        return self._current_fd.value()

    def _reclaim(self, target: int) -> None:
        # memory.reclaim (Linux 5.19+) reclaims without ever OOM-killing; lowering
        # memory.max would kill the resident processes if it could not.
        with contextlib.suppress(OSError):
            _write(self._file("memory.reclaim"), max(0, self._current() - target))

    def set_limits(self, memory: int, pids: int, ceiling: int | None = None) -> None:
        self._set_slack(memory)
        limit = memory + self._baseline_for_run(self._current)
        self._max = limit if ceiling is None else min(limit, ceiling)
        self._memory_max.write(self._max)
        if self._has_swap and not self._swap_off:
            _write(self._file("memory.swap.max"), 0)  # once: nothing raises it again
            self._swap_off = True
        self._pids_max.write(pids)

    def _cpu_usec(self) -> int:
        return self._cpu_stat.keyed().get(b"usage_usec", 0)

    def begin(self) -> None:
        self._cpu_before = self._cpu_usec()
        events = self._events.keyed()
        self._oom_before = events.get(b"oom_kill", 0)
        self._max_before = events.get(b"max", 0)
        self._baseline = self._sampled = self._current()
        self._peak_resettable = False
        if self._has_peak:
            # Since Linux 6.12 a write to memory.peak resets it for reads through that fd.
            if self._peak_fd is None:
                self._peak_fd = os.open(self._file("memory.peak"), os.O_RDWR | os.O_CLOEXEC)
            try:
                os.pwrite(self._peak_fd, b"reset\n", 0)
                self._peak_resettable = True
            except OSError:
                self._peak_before = int(os.pread(self._peak_fd, 64, 0).split()[0])
        self.sample_interval = None if self._peak_resettable else SAMPLE_INTERVAL

    def sample(self) -> None:
        self._sampled = max(self._sampled, self._current())

    def cpu_time(self) -> float:
        return (self._cpu_usec() - self._cpu_before) / 1e6

    def at_limit(self) -> bool:
        return self._current() >= self._max - self._slack

    def end(self) -> CgroupUsage:
        events = self._events.keyed()
        self.sample()
        baseline = min(self._baseline, self._current())
        peak, sampled = self._sampled, True
        if self._peak_fd is not None:
            lifetime = int(os.pread(self._peak_fd, 64, 0).split()[0])
            # Without a reset the peak is the group's lifetime one: it is this run's
            # only if the run passed what it was before.
            if self._peak_resettable or lifetime > self._peak_before:
                peak, sampled = lifetime, False
        return CgroupUsage(
            cpu_time=self.cpu_time(),
            memory_peak=max(0, peak - baseline),
            oom_killed=events.get(b"oom_kill", 0) > self._oom_before,
            memory_limit_hit=events.get(b"max", 0) > self._max_before,
            peak_sampled=sampled,
        )

    def close(self) -> None:
        # Once only: a second os.close could close a descriptor opened meanwhile.
        counters, self._counters = self._counters, []
        for counter in counters:
            counter.close()
        if self._peak_fd is not None:
            os.close(self._peak_fd)
            self._peak_fd = None

    def remove(self) -> None:
        self.close()
        _kill_members(self._path)
        _try_rmdir(self._path)


#: The controllers a v2 instance group needs below it.
_V2_NEEDED = ("memory", "pids", "cpu")


class _CgroupsV2(Cgroups):
    """Instance groups under the cgroup this process is in (or the parent of the leaf
    it was moved to), with memory, pids and cpu enabled for the slots below.

    v2 allows processes only in leaves once controllers are enabled below a group
    ("no internal processes"), except at the root. Where this process's group does not
    have the controllers enabled for its children yet, they are enabled; if the group
    holds this process and nothing else (a systemd ``Delegate=yes`` unit, a container
    with its own cgroup namespace), this process first moves into a leaf of its own
    (``codeexec-<pid>-host``) so that the controllers can be enabled; if other
    processes are there, it cannot, and says why.
    """

    version = 2

    def __init__(self, mount: str) -> None:
        parent = _v2_parent(mount)
        _sweep_stale(parent)
        _enable_below(parent, mount)
        self._dir = os.path.join(parent, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        os.mkdir(self._dir)
        try:
            _write(os.path.join(self._dir, "cgroup.subtree_control"), "+memory +pids +cpu")
        except OSError:
            _remove_tree(self._dir)
            raise
        self._slots: list[Slot] = []

    def slot(self, name: str) -> Slot:
        slot = _SlotV2(os.path.join(self._dir, name))
        self._slots.append(slot)
        return slot

    def remove(self) -> None:
        for slot in self._slots:
            slot.remove()
        _remove_tree(self._dir)


def _host_leaf() -> str:
    return f"{_PREFIX}{os.getpid()}-host"


def _v2_parent(mount: str) -> str:
    """Where instance groups go: this process's group, or the parent of the leaf this
    process moved itself to."""
    own = _own_paths().get("", "/").lstrip("/")
    if os.path.basename(own) == _host_leaf():
        own = os.path.dirname(own)
    return os.path.join(mount, own)


def _enable_below(parent: str, mount: str) -> None:
    """Make memory, pids and cpu available to ``parent``'s children (see the class)."""
    control = os.path.join(parent, "cgroup.subtree_control")
    with open(control) as f:
        if set(_V2_NEEDED) <= set(f.read().split()):
            return
    enable = " ".join(f"+{c}" for c in _V2_NEEDED)
    try:
        _write(control, enable)
        return
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise OSError(
                exc.errno, f"cannot enable {enable} in {control}: {exc.strerror}"
            ) from None
    with open(os.path.join(parent, "cgroup.procs")) as f:
        others = [int(line) for line in f if line.strip() and int(line) != os.getpid()]
    if others:
        raise OSError(
            errno.EBUSY,
            f"{parent} holds {len(others)} other process(es), so its children cannot get"
            f" {enable} (cgroup v2 puts processes in leaves only); run codeexec in a"
            " cgroup of its own (systemd Delegate=yes, a container's cgroup namespace),"
            f" or enable {enable} in {control}",
        )
    leaf = os.path.join(parent, _host_leaf())
    os.makedirs(leaf, exist_ok=True)
    _write(os.path.join(leaf, "cgroup.procs"), os.getpid())  # all our threads move
    log.info("cgroup v2: moved this process into %s to enable %s below %s", leaf, enable, parent)
    _write(control, enable)


def _v2_controllers(mount: str) -> set[str]:
    own = _own_paths().get("", "/")
    try:
        with open(os.path.join(mount, own.lstrip("/"), "cgroup.controllers")) as f:
            return set(f.read().split())
    except OSError:
        return set()


def attach(pid: int) -> Slot:
    """The cgroup a running process is in (a container's init), as a :class:`Slot`
    to set limits on and measure runs in; :meth:`Slot.close` lets go of it, the
    group's owner removes it. Raises OSError if it cannot be used."""
    paths: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path.lstrip("/")
    v1: dict[str, str] = {}
    for mountpoint, fstype, options in _mounts():
        if fstype == "cgroup2" and "" in paths and not v1:
            unified = os.path.join(mountpoint, paths[""])
            if os.path.exists(os.path.join(unified, "memory.max")):
                return _SlotV2(unified)
        for controller in _CgroupsV1.CONTROLLERS:
            if fstype == "cgroup" and controller in options and controller in paths:
                v1.setdefault(controller, os.path.join(mountpoint, paths[controller]))
    if all(c in v1 for c in _CgroupsV1.CONTROLLERS):
        if not all(os.path.isdir(d) for d in v1.values()):
            raise OSError(f"the cgroup of process {pid} is not visible here: {v1}")
        return _SlotV1(v1)
    raise OSError(f"process {pid} has no memory, pids and cpu accounting cgroup")


def detect() -> tuple[Cgroups | None, str]:
    """Make an instance group on whichever hierarchy has the controllers we need.

    Returns ``(cgroups, "")`` or ``(None, reason)``; never raises.
    """
    try:
        mounts = _mounts()
    except OSError as exc:
        return None, f"cannot read /proc/self/mounts: {exc}"
    v1: dict[str, str] = {}
    v2_mount = None
    for mountpoint, fstype, options in mounts:
        if fstype == "cgroup2":
            v2_mount = v2_mount or mountpoint
        else:
            for controller in _CgroupsV1.CONTROLLERS:
                if controller in options:
                    v1.setdefault(controller, mountpoint)
    reasons = []
    if all(c in v1 for c in _CgroupsV1.CONTROLLERS):
        try:
            return _CgroupsV1(v1), ""
        except OSError as exc:
            reasons.append(f"cgroup v1: {exc}")
    elif v1:
        missing = [c for c in _CgroupsV1.CONTROLLERS if c not in v1]
        reasons.append(f"cgroup v1 lacks the {', '.join(missing)} controller(s)")
    if v2_mount is not None:
        have = _v2_controllers(v2_mount)
        if {"memory", "pids", "cpu"} <= have:
            try:
                return _CgroupsV2(v2_mount), ""
            except OSError as exc:
                reasons.append(f"cgroup v2 at {v2_mount}: {exc}")
        else:
            reasons.append(
                f"cgroup v2 at {v2_mount} offers {sorted(have) or 'no'} controllers,"
                " needs memory, pids and cpu"
            )
    if not reasons:
        reasons.append("no cgroup file system is mounted")
    return None, "; ".join(reasons)


def describe() -> dict[str, object]:
    """The host's cgroups as codeexec sees them, for ``codeexec doctor``: the hierarchy
    (``v1``, ``v2``, ``hybrid`` or ``none``), this process's groups and controllers on
    each, which one an instance group would use (made and removed here to be sure), and
    if none, why."""
    mounts = _mounts()
    v1: dict[str, str] = {}
    v2_mount = None
    for mountpoint, fstype, options in mounts:
        if fstype == "cgroup2":
            v2_mount = v2_mount or mountpoint
        for controller in _CgroupsV1.CONTROLLERS:
            if fstype == "cgroup" and controller in options:
                v1.setdefault(controller, mountpoint)
    kind = {(True, True): "hybrid", (True, False): "v1", (False, True): "v2"}.get(
        (bool(v1), v2_mount is not None), "none"
    )
    info: dict[str, object] = {"hierarchy": kind}
    own = _own_paths()
    if v1:
        info["v1"] = {
            c: os.path.join(v1[c], own.get(c, "/").lstrip("/")) if c in v1 else None
            for c in _CgroupsV1.CONTROLLERS
        }
    if v2_mount is not None:
        group = _v2_parent(v2_mount)
        info["v2"] = {
            "group": group,
            "controllers": sorted(_read_words(os.path.join(group, "cgroup.controllers"))),
            "enabled_below": sorted(_read_words(os.path.join(group, "cgroup.subtree_control"))),
            "writable": os.access(group, os.W_OK),
        }
    cgroups, reason = detect()
    if cgroups is not None:
        info["using"] = f"v{cgroups.version}"
        cgroups.remove()
    else:
        info["missing"] = reason
    return info


def _read_words(path: str) -> set[str]:
    try:
        with open(path) as f:
            return set(f.read().split())
    except OSError:
        return set()
