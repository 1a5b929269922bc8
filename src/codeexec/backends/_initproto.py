"""The wire format of the jail init (``_jailinit.c``): one SOCK_SEQPACKET message each,
fields separated by NUL bytes. Stdlib only: the slot server loads it by path.

Used by the nsjail sandbox's slot servers (a persistent jail per slot) and by the
docker sandbox's warm containers (the init is each container's pid 1).
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket

#: Largest message either side sends (argv and environment of one run).
MAX_MSG = 1 << 16


def encode_run(
    cwd: str,
    rlimits: list[tuple[int, int, int]],
    argv: list[str],
    env: dict[str, str],
) -> bytes:
    """A "run" message (send it with the run's stdin, stdout and stderr fds).

    Raises ``OSError(EINVAL)`` for a NUL byte in any field, and ``OSError(E2BIG)``
    when the message would exceed :data:`MAX_MSG`.
    """
    fields = ["run", cwd, str(len(rlimits))]
    for limit in rlimits:
        fields += [str(x) for x in limit]
    pairs = [f"{k}={v}" for k, v in env.items()]
    fields += [str(len(argv)), *argv, str(len(pairs)), *pairs]
    if any("\0" in f for f in fields):
        raise OSError(errno.EINVAL, "NUL byte in argv, env or cwd")
    data = "\0".join(fields).encode()
    if len(data) > MAX_MSG:
        raise OSError(errno.E2BIG, f"argv and env take {len(data)} bytes (at most {MAX_MSG})")
    return data


def encode_setup(uid: int | None, gid: int | None, seccomp_filter: bytes) -> bytes:
    """The "setup" message, the init's first: the uid and gid its programs run as
    (None: they keep the init's own) and the seccomp BPF program they get."""
    uid_text = "-1" if uid is None else str(uid)
    gid_text = "-1" if gid is None else str(gid)
    return "\0".join(["setup", uid_text, gid_text, seccomp_filter.hex()]).encode()


def send_setup(
    sock: socket.socket, uid: int | None, gid: int | None, seccomp_filter: bytes
) -> None:
    """Send the init its setup (then wait for its ``{"op": "ready"}``)."""
    sock.send(encode_setup(uid, gid, seccomp_filter))


def send_run(sock: socket.socket, msg: dict, rlimits: list, fds: list[int]) -> None:
    """Send one run (``msg`` has cwd, argv and env, as the slot protocol's)."""
    socket.send_fds(sock, [encode_run(msg["cwd"], rlimits, msg["argv"], msg["env"])], fds)


def receive(sock: socket.socket) -> dict | None:
    """The init's next message as the slot protocol's dict; None if the init is gone.

    ``{"op": "ready"}``, ``{"op": "exited", status, wall_time, utime, stime, maxrss,
    ipc_left, tainted}``, or ``{"op": "exited", "spawn_error": ...}``. ``tainted``: the
    init found its own limits or scheduling changed and exited; replace the jail.
    """
    try:
        data = sock.recv(MAX_MSG)
    except OSError:
        return None
    if not data:
        return None
    fields = data.decode(errors="replace").split("\0")
    if fields[0] == "exited" and len(fields) >= 8:
        status, utime, stime, maxrss, wall, left, tainted = (int(x) for x in fields[1:8])
        return {
            "op": "exited",
            "status": status,
            "wall_time": wall / 1e9,
            "utime": utime / 1e6,
            "stime": stime / 1e6,
            "maxrss": maxrss * 1024,
            "ipc_left": left,
            "tainted": bool(tainted),
        }
    if fields[0] == "error":
        return {"op": "exited", "spawn_error": fields[1] if len(fields) > 1 else "unknown"}
    if fields[0] == "ready":
        return {"op": "ready"}
    return {"op": "unknown", "fields": fields}


def died(wall_time: float) -> dict:
    """What to report for a run whose init died under it: killed, as far as anyone
    knows; whoever holds the run's cgroup decides from its OOM counter."""
    return {
        "op": "exited",
        "status": signal.SIGKILL,
        "wall_time": wall_time,
        "utime": 0.0,
        "stime": 0.0,
        "maxrss": 0,
        "init_died": True,
    }


def request_kill(sock: socket.socket) -> None:
    """Ask the init to kill the run's processes now (ignored once it has ended)."""
    with contextlib.suppress(OSError):
        sock.send(b"kill")
