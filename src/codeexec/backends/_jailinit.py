"""The persistent jail's init (``_jailinit.c``), compiled once per machine and cached.

The init is C because it runs inside every jail for the jail's whole life: a static
binary of a few hundred kilobytes costs the slot nothing, where a Python interpreter
would cost its memory and, per run, more CPU than nsjail itself. It is compiled with
the host's C compiler (``$CC``, ``cc`` or ``gcc``) the first time a sandbox needs it,
into ``$CODEEXEC_CACHE_DIR`` (default ``$XDG_CACHE_HOME/codeexec``, else
``~/.cache/codeexec``), named by the hash of its source and of the compiler, so a
changed source or compiler builds a new one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

import attrs

from .._errors import SandboxUnavailableError
from . import _seccomp

__all__ = ["JailInit", "build_init", "cache_dir", "jail_init"]

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_jailinit.c")


def cache_dir() -> str:
    """Where compiled helpers are kept."""
    explicit = os.environ.get("CODEEXEC_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "codeexec")


def _compiler() -> str:
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise SandboxUnavailableError(
        "nsjail", "no C compiler (cc, gcc or $CC) to build the persistent jail's init"
    )


def _trusted(path: str) -> bool:
    """Ours, and writable by nobody else: root executes it at the jail's start."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_uid == os.geteuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def build_init(directory: str | None = None) -> str:
    """The compiled init's path, building it first if needed.

    Raises :class:`SandboxUnavailableError` (with the compiler's message) when it
    cannot be built.
    """
    cc = _compiler()
    with open(SOURCE, "rb") as f:
        source = f.read()
    version = subprocess.run([cc, "--version"], capture_output=True, timeout=30).stdout
    key = hashlib.sha256(source + b"\0" + version).hexdigest()[:16]
    directory = directory or cache_dir()
    target = os.path.join(directory, f"jailinit-{key}")
    if _trusted(target):
        return target
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".jailinit-", dir=directory)
    os.close(fd)
    try:
        errors = ""
        # Static first: the jail holds no libc surprises for it; dynamic if this
        # compiler has no static libc.
        for static in (["-static"], []):
            proc = subprocess.run(
                [cc, "-O2", "-Wall", *static, "-o", tmp, SOURCE],
                capture_output=True,
                timeout=120,
            )
            if proc.returncode == 0:
                os.chmod(tmp, 0o755)
                os.replace(tmp, target)  # atomic: concurrent builders agree
                return target
            errors = proc.stderr.decode(errors="replace").strip()[-1000:]
        raise SandboxUnavailableError("nsjail", f"the jail's init did not compile: {errors}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@attrs.frozen
class JailInit:
    """The compiled init, the seccomp filter it installs in every run, and a digest of
    both (they decide what a run may do: part of a sandbox's identity)."""

    path: str
    seccomp: bytes
    digest: str


def jail_init() -> JailInit:
    """Build (or find) the init and compile the seccomp policy. Raises
    :class:`SandboxUnavailableError` or OSError with the reason when either fails."""
    path = build_init()
    seccomp = _seccomp.bpf()
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read() + seccomp).hexdigest()[:12]
    return JailInit(path, seccomp, digest)
