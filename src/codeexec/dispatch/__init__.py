"""Dispatchers: who judges a submitted job, and where.

- :class:`InlineDispatcher` (``"inline"``): in the caller's thread;
- :class:`LocalDispatcher` (``"local"``, the default behind ``Executor.submit``): a
  bounded priority queue and worker threads in this process;
- ``CeleryDispatcher`` (``codeexec[celery]``): Celery workers on any number of machines,
  Redis (or RabbitMQ) as the broker; ``codeexec worker`` starts one.

Per-user fairness (:class:`FairnessPolicy`, kept in memory or in Redis) and load
metrics per queue (:class:`QueueMetrics`) work with all three.
"""

from __future__ import annotations

from typing import Any

from .._errors import CodeExecError
from ._base import Dispatcher, Estimates, QueueMetrics, user_of
from ._fairness import Fairness, FairnessPolicy, MemoryFairness, RedisFairness
from ._local import InlineDispatcher, LocalDispatcher

__all__ = [
    "CeleryDispatcher",
    "Dispatcher",
    "Estimates",
    "Fairness",
    "FairnessPolicy",
    "InlineDispatcher",
    "LocalDispatcher",
    "MemoryFairness",
    "QueueMetrics",
    "RedisFairness",
    "make_dispatcher",
    "user_of",
]


def __getattr__(name: str) -> Any:
    if name == "CeleryDispatcher":  # imports celery: only when asked for
        from ._celery import CeleryDispatcher

        return CeleryDispatcher
    raise AttributeError(name)


def make_dispatcher(spec: object) -> Any:
    """What ``Executor(dispatcher=...)`` accepts: a dispatcher object, ``"local"``
    (the default, also for None) or ``"inline"``."""
    if spec is None or spec == "local":
        return LocalDispatcher()
    if spec == "inline":
        return InlineDispatcher()
    if isinstance(spec, str):
        raise CodeExecError(
            f"unknown dispatcher {spec!r}: use 'local', 'inline' or a dispatcher object"
            " (CeleryDispatcher(...))"
        )
    if not all(hasattr(spec, m) for m in ("bind", "submit", "metrics", "close")):
        raise CodeExecError(f"not a dispatcher: {spec!r}")
    return spec
