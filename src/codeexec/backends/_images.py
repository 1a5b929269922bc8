"""Minimal Docker images for languages, built offline from the host's own toolchains.

No image registry may be reachable, so images are made from what the host has: the
language's tools (as the language registry resolves them), the files of the Debian
packages they come from and of those packages' dependencies (``dpkg-query``; the
packages a tool's package *recommends* too, since that is where Debian puts, say,
``libc6-dev`` for gcc and the full standard library for ``python3.X-minimal``), and the
shared libraries ``ldd`` lists for each tool (which covers tools no package owns, such
as ``/usr/local/bin/python3``). Documentation, manuals and locales are left out, and so
is ``/etc`` but for what those files link to (the JDK's ``conf/security/java.security``
is a symlink to ``/etc/java-17-openjdk/security/java.security``).
The tar is handed to ``docker import``.

An image is tagged ``codeexec/<languages>:<key>``, the key a hash of what went in
(package versions, paths, sizes and times of files outside packages), so building
again on an unchanged host finds the image instead of importing it again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from typing import Any

import attrs

from .._errors import SandboxUnavailableError
from .._languages import LanguageRegistry, default_languages

log = logging.getLogger(__name__)

__all__ = [
    "ImageContents",
    "build_image",
    "connect",
    "host_packages_digest",
    "image_contents",
    "image_tag",
]

#: What every image has besides its languages: a shell and the basic tools.
BASE_TOOLS = ("/bin/sh", "/bin/bash", "/usr/bin/env", "/bin/cat", "/bin/sleep", "/bin/true")
#: Never copied into an image.
SKIPPED = (
    "/usr/share/doc/",
    "/usr/share/man/",
    "/usr/share/info/",
    "/usr/share/locale/",
    "/usr/share/lintian/",
    "/usr/share/bug/",
    "/etc/",  # written fresh below: nothing of the host's configuration goes in...
)
#: ...but the symlinks Debian's alternatives make tools go through, and the files that
#: packaged files link to (a package's own configuration, moved to /etc to be editable).
ALTERNATIVES = "/etc/alternatives/"
#: Mount points a container needs in its (read-only) root.
MOUNT_POINTS = ("proc", "sys", "dev", "tmp", "work", "run", ".codeexec")
#: Bumped when what goes into an image changes.
FORMAT = "2"
RUN_USER = ("runner", 65534)


@attrs.frozen
class ImageContents:
    """What an image is made of."""

    languages: tuple[str, ...]
    packages: tuple[str, ...]  # "name=version"
    paths: tuple[str, ...]  # every file and symlink, absolute, sorted
    key: str  # names the image: a hash of the packages and of the files outside them


def image_tag(languages: Iterable[str], key: str) -> str:
    name = "-".join(sorted(languages)) or "base"
    return f"codeexec/{name}:{key}"


# --------------------------------------------------------------------- closure


def _canonical(path: str) -> str:
    """The path with its directories resolved (``/bin/sh`` → ``/usr/bin/sh`` on a
    merged-/usr host) but its last component kept, so a symlink stays a symlink."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _link_chain(path: str) -> list[str]:
    """``path`` and every symlink it goes through to its target, canonical."""
    chain, seen = [], set()
    current = _canonical(path)
    while current not in seen:
        seen.add(current)
        chain.append(current)
        if not os.path.islink(current):
            break
        target = os.readlink(current)
        current = _canonical(os.path.join(os.path.dirname(current), target))
    return chain


def _ldd(path: str) -> list[str]:
    """Shared libraries (and the loader) an ELF file needs, by ``ldd``."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    proc = subprocess.run([ldd, path], capture_output=True, text=True, timeout=60)
    found = []
    for line in proc.stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            found.append(match.group(1))
    return found


def _installed_packages() -> dict[str, tuple[str, str, str]]:
    """name → (version, depends, recommends) of installed packages; {} without dpkg."""
    if shutil.which("dpkg-query") is None:
        return {}
    fmt = (
        "${Package}\t${Version}\t${db:Status-Abbrev}\t${Pre-Depends}, ${Depends}"
        "\t${Recommends}\t${Provides}\n"
    )
    proc = subprocess.run(["dpkg-query", "-W", "-f", fmt], capture_output=True, text=True)
    installed = {}
    for line in proc.stdout.splitlines():
        name, version, status, depends, recommends, provides = line.split("\t")
        if status.startswith("ii"):
            installed[name] = (version, depends, recommends, provides)
    return installed  # type: ignore[return-value]


def host_packages_digest() -> str:
    """A hash of every installed package's name and version: what any image built here
    is made of, so it changes when one of them could ("" without dpkg)."""
    installed = _installed_packages()
    digest = hashlib.sha256(FORMAT.encode())
    for name in sorted(installed):
        digest.update(f"{name}={installed[name][0]}\n".encode())
    return digest.hexdigest()[:12] if installed else ""


def _owners(paths: Iterable[str]) -> set[str]:
    """Installed packages that own ``paths`` (one query; unowned paths are skipped)."""
    owners: set[str] = set()
    names = sorted(set(paths))
    if not names:
        return owners
    proc = subprocess.run(["dpkg-query", "-S", *names], capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if ": " in line and not line.startswith("diversion"):
            for name in line.split(": ", 1)[0].split(","):
                owners.add(name.strip().split(":")[0])
    return owners


def _dependency_closure(roots: set[str], installed: dict) -> set[str]:
    """``roots``, what they recommend, and everything those depend on (installed
    alternatives and providers only)."""
    providers: dict[str, list[str]] = {}
    for name, (_, _, _, provides) in installed.items():
        for item in provides.split(","):
            virtual = item.strip().split(" ")[0]
            if virtual:
                providers.setdefault(virtual, []).append(name)

    def resolve(relation: str) -> list[str]:
        for alternative in relation.split("|"):
            name = alternative.strip().split(" ")[0].split(":")[0]
            if not name:
                continue
            candidates = [name] if name in installed else providers.get(name, [])
            if candidates:
                return candidates
        return []

    stack = list(roots)
    for root in roots:
        if root in installed:
            for relation in installed[root][2].split(","):
                stack += resolve(relation)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        for relation in installed[name][1].split(","):
            stack += resolve(relation)
    return seen


def _package_files(packages: Iterable[str]) -> list[str]:
    names = sorted(packages)
    if not names:
        return []
    proc = subprocess.run(["dpkg-query", "-L", *names], capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if line.startswith("/")]


def image_contents(
    languages: Iterable[str] = (), registry: LanguageRegistry | None = None
) -> ImageContents:
    """The files an image for ``languages`` needs, from this host."""
    registry = registry or LanguageRegistry(default_languages())
    names = tuple(sorted({registry.get(name).name for name in languages}))
    tools = [p for p in BASE_TOOLS if os.path.exists(p)]
    for name in names:
        tools += list(registry.toolchain(name).tools.values())
    chains = [link for tool in tools for link in _link_chain(tool)]
    files: set[str] = set(chains)
    installed = _installed_packages()
    packages: set[str] = set()
    packaged: set[str] = set()
    if installed:
        packages = _dependency_closure(_owners(os.path.realpath(t) for t in tools), installed)
        for path in _package_files(packages):
            canonical = _canonical(path)
            if os.path.lexists(canonical) and not os.path.isdir(canonical):
                packaged.add(canonical)
    files |= packaged
    for tool in tools:
        for library in _ldd(os.path.realpath(tool)):
            files.update(_link_chain(library))
    # Files here may be symlinks into /etc (Debian moves a package's own configuration
    # there to be editable: the JDK's conf/security/java.security, lib/jvm.cfg, ...):
    # their targets go in, if anyone may read them (nothing secret of the host does).
    linked = {
        target
        for f in files
        if os.path.islink(f) and not f.startswith(SKIPPED)
        for target in _link_chain(f)[1:]
        if target.startswith("/etc/") and os.path.isfile(target) and os.stat(target).st_mode & 0o004
    }
    kept = sorted(
        f
        for f in files | linked
        if not f.startswith(SKIPPED) or f.startswith(ALTERNATIVES) or f in linked
    )
    versions = tuple(sorted(f"{p}={installed[p][0]}" for p in packages))
    digest = hashlib.sha256(f"{FORMAT}\0{names}\0{versions}\n".encode())
    for path in kept:
        if path not in packaged or path in linked:  # configuration may be edited
            st = os.lstat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return ImageContents(
        languages=names, packages=versions, paths=tuple(kept), key=digest.hexdigest()[:16]
    )


# --------------------------------------------------------------------- the tar


def _etc_files() -> dict[str, bytes]:
    user, uid = RUN_USER
    passwd = f"root:x:0:0:root:/root:/bin/sh\n{user}:x:{uid}:{uid}::/work:/bin/sh\n"
    return {
        "etc/passwd": passwd.encode(),
        "etc/group": f"root:x:0:\n{user}:x:{uid}:\n".encode(),
        "etc/hostname": b"codeexec\n",
        "etc/hosts": b"127.0.0.1 localhost codeexec\n::1 localhost\n",
        "etc/nsswitch.conf": b"passwd: files\ngroup: files\nhosts: files\n",
    }


def _write_tar(contents: ImageContents, path: str) -> None:
    with tarfile.open(path, "w") as tar:
        dirs: set[str] = set()

        def add_parents(name: str) -> None:
            parent = os.path.dirname(name)
            if parent and parent not in dirs:
                add_parents(parent)
                dirs.add(parent)
                info = tarfile.TarInfo(parent)
                info.type = tarfile.DIRTYPE
                real = "/" + parent
                info.mode = os.stat(real).st_mode & 0o7777 if os.path.isdir(real) else 0o755
                tar.addfile(info)

        # Top-level symlinks of a merged-/usr host (/bin → usr/bin, ...).
        for entry in sorted(os.listdir("/")):
            full = "/" + entry
            if os.path.islink(full) and os.path.realpath(full).startswith("/usr/"):
                tar.add(full, arcname=entry, recursive=False)
        for name in MOUNT_POINTS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
            dirs.add(name)
        for file in contents.paths:
            arcname = file.lstrip("/")
            add_parents(arcname)
            info = tar.gettarinfo(file, arcname=arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if info.isreg():
                with open(file, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
        for arcname, data in _etc_files().items():
            add_parents(arcname)
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


def build_image(
    languages: Iterable[str] = (),
    *,
    client: Any = None,
    registry: LanguageRegistry | None = None,
    rebuild: bool = False,
) -> str:
    """Build (or find) the image for ``languages`` from this host's toolchains; returns
    its tag. ``client`` is a ``docker.DockerClient`` (default: from the environment)."""
    contents = image_contents(languages, registry)
    tag = image_tag(contents.languages, contents.key)
    docker_client = client or connect()
    images = docker_client.images
    if not rebuild:
        import docker.errors

        try:
            images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
    repository, _, key = tag.partition(":")
    with tempfile.TemporaryDirectory(prefix="codeexec-image-") as tmp:
        tar_path = os.path.join(tmp, "rootfs.tar")
        _write_tar(contents, tar_path)
        log.info(
            "importing %s (%d files, %d MiB)",
            tag,
            len(contents.paths),
            os.path.getsize(tar_path) >> 20,
        )
        changes = [
            f"LABEL org.codeexec.languages={','.join(contents.languages) or 'base'}",
            f"USER {RUN_USER[1]}:{RUN_USER[1]}",
            "WORKDIR /work",
            'CMD ["/bin/sh"]',
        ]
        docker_client.api.import_image_from_file(
            tar_path, repository=repository, tag=key, changes=changes
        )
    return tag


def connect() -> Any:
    """A ``docker.DockerClient`` for the daemon of the environment, checked to answer;
    :class:`SandboxUnavailableError` says why not."""
    try:
        import docker
    except ImportError as exc:
        raise SandboxUnavailableError(
            "docker", "the docker SDK is not installed: pip install 'codeexec[docker]'"
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to reach the daemon
        raise SandboxUnavailableError("docker", f"no Docker daemon answers: {exc}") from exc
    return client
