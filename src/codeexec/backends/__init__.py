"""Sandbox backends, by object or by name.

Built-in backends are named by strings and imported only when asked for (importing
codeexec never imports docker or any other optional dependency); a third party's
backend is found through the entry-point group ``codeexec.sandboxes``::

    [project.entry-points."codeexec.sandboxes"]
    firecracker = "my_package.sandbox:FirecrackerSandbox"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .._errors import SandboxUnavailableError, UnknownSandboxError
from ._protocol import Capability, RunOutcome, RunRequest, Sandbox

__all__ = [
    "Capability",
    "RunOutcome",
    "RunRequest",
    "Sandbox",
    "available_sandboxes",
    "build_image",
    "get_sandbox",
]

ENTRY_POINT_GROUP = "codeexec.sandboxes"

#: name → (module, class, the extra that provides its dependencies or None)
_BUILTIN: dict[str, tuple[str, str, str | None]] = {
    "process": ("codeexec.backends.process", "ProcessSandbox", None),
    "nsjail": ("codeexec.backends.nsjail", "NsjailSandbox", None),
    "docker": ("codeexec.backends.docker", "DockerSandbox", "docker"),
}


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_sandboxes() -> list[str]:
    """Names of built-in and installed third-party sandboxes."""
    return sorted(set(_BUILTIN) | set(_entry_points()))


def sandbox_class(name: str) -> type:
    """The class registered under ``name``."""
    if name in _BUILTIN:
        module_name, class_name, extra = _BUILTIN[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f"; pip install 'codeexec[{extra}]'" if extra else ""
            raise SandboxUnavailableError(name, f"{exc}{hint}") from exc
        cls: type = getattr(module, class_name)
        return cls
    eps = _entry_points()
    if name in eps:
        try:
            loaded: type = eps[name].load()
        except Exception as exc:  # a broken plugin must not look like a missing one
            raise SandboxUnavailableError(name, f"its entry point failed to load: {exc}") from exc
        return loaded
    raise UnknownSandboxError(name, available_sandboxes())


def get_sandbox(spec: object = "process", **options: Any) -> Sandbox:
    """A sandbox from an object (returned as is) or a name (constructed with ``options``)."""
    if isinstance(spec, str):
        instance = sandbox_class(spec)(**options)
    else:
        instance = spec
    if not isinstance(instance, Sandbox):
        raise TypeError(f"{instance!r} does not implement the codeexec Sandbox protocol")
    return instance


def build_image(languages: Any = (), **options: Any) -> str:
    """Build (or find) a Docker image for ``languages`` from this host's toolchains,
    offline; returns its tag. See :func:`codeexec.backends._images.build_image`."""
    from ._images import build_image as build

    return build(languages, **options)
