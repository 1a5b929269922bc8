"""The spare process inside an nsjail jail: wait for one command, then become it.

The nsjail sandbox's slot server starts ``nsjail -Me ... -- python3 -I -S -B
_jailwaiter.py FD ERR_FD`` before a run is asked for: nsjail builds the jail (mount
namespace with read-only binds, seccomp policy, dropped uid and capabilities) and
executes this script in it, off the run's critical path. When the run comes, the
server sends its argv, environment, cwd and rlimits on socket FD with the run's stdin,
stdout and stderr; this script applies the limits (lowering needs no privilege, so they
hold exactly, from the first instruction of the program), takes the descriptors and
executes the program. Anything that goes wrong before the exec is written to ERR_FD,
which the exec closes.

Standard library only (it runs with -S, inside the jail).
"""

import contextlib
import json
import os
import resource
import signal
import socket
import sys


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    err_w = int(sys.argv[2])
    os.set_inheritable(err_w, False)
    try:
        data, fds, _, _ = socket.recv_fds(control, 1 << 16, 8)
        if not data:
            os._exit(0)  # the slot is closing: no run for this spare
        msg = json.loads(data)
        for res, soft, hard in msg["rlimits"]:
            # Never above the hard limit we hold. Python shows rlimits signed: a
            # negative one is RLIM_INFINITY or above 2**63 (the slot server's
            # _forkserver.lowered, which this script cannot import).
            _, current = resource.getrlimit(res)
            if current >= 0:
                soft, hard = min(soft, current), min(hard, current)
            resource.setrlimit(res, (soft, hard))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        # Python ignores these, and an ignored signal stays ignored across exec.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        os.chdir(msg["cwd"])
        os.closerange(3, err_w)
        os.closerange(err_w + 1, 1 << 16)
        os.execve(msg["argv"][0], msg["argv"], msg["env"])
    except BaseException as exc:  # report anything, then die
        with contextlib.suppress(OSError):
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode())
    os._exit(127)


if __name__ == "__main__":
    main()
