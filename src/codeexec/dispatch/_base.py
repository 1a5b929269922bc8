"""What every dispatcher shares: the protocol, run-time estimates, queue metrics."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

import attrs

from .._model import Submission

if TYPE_CHECKING:
    from .._executor import Executor, Job

__all__ = ["Dispatcher", "Estimates", "QueueMetrics", "user_of"]


class Dispatcher(Protocol):
    """Takes submissions and gets them judged: in the caller (``inline``), by worker
    threads (``local``), or by workers on other machines (``celery``)."""

    name: str

    def bind(self, executor: Executor) -> None:
        """Called once by the executor that owns this dispatcher."""

    def submit(self, submission: Submission, *, priority: int = 0) -> Job:
        """Queue a submission (validated first); returns at once with its job."""
        ...

    def metrics(self) -> dict[str, QueueMetrics]:
        """Load per queue, for autoscaling."""
        ...

    def close(self) -> None: ...


@attrs.frozen
class QueueMetrics:
    """The load of one queue: jobs waiting, jobs running (where known), how long the
    oldest waiting job has waited and the recent mean wait, in seconds; ``backlog`` is
    the number of messages waiting in the broker for every host (Celery on Redis), or
    None where it is not known."""

    length: int
    running: int
    oldest_wait: float
    mean_wait: float
    backlog: int | None = None


class Estimates:
    """Moving averages of judging time per (language, backend), in seconds."""

    def __init__(self, weight: float = 0.2) -> None:
        self.weight = weight
        self._values: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, key: tuple[str, str], seconds: float) -> None:
        with self._lock:
            old = self._values.get(key)
            self._values[key] = (
                seconds if old is None else (1 - self.weight) * old + self.weight * seconds
            )

    def get(self, key: tuple[str, str]) -> float:
        """The average, or 0.0 before anything was measured."""
        return self._values.get(key, 0.0)


def user_of(submission: Submission) -> str | None:
    """The user a submission counts against for fairness: ``metadata["user_id"]``."""
    user = submission.metadata.get("user_id")
    return None if user is None else str(user)
