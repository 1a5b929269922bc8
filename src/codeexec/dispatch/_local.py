"""Dispatchers in this process: ``inline`` (the caller's thread) and ``local`` (a
bounded priority queue served by worker threads, the embedded default behind
``Executor.submit``)."""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .._errors import CodeExecError, JobCancelled, QueueFull
from .._model import Result, Submission
from ._base import QueueMetrics, user_of

if TYPE_CHECKING:
    from .._executor import Executor, Job
    from ._fairness import Fairness

__all__ = ["InlineDispatcher", "LocalDispatcher"]


class _Entry:
    """One job in the local queue."""

    __slots__ = ("job", "prepared", "enqueued", "user", "started")

    def __init__(self, job: Job, prepared: Any, enqueued: float, user: str | None) -> None:
        self.job = job
        self.prepared = prepared
        self.enqueued = enqueued
        self.user = user
        self.started = False


class InlineDispatcher:
    """Runs each job in the caller's thread, inside ``submit``: the returned job is
    already done. For hosts that bring their own concurrency, and for tests."""

    name = "inline"

    def __init__(self, *, fairness: Fairness | None = None) -> None:
        self.fairness = fairness
        self._executor: Executor | None = None

    def bind(self, executor: Executor) -> None:
        self._executor = executor

    def submit(self, submission: Submission, *, priority: int = 0) -> Job:
        from .._executor import Job

        executor = _bound(self._executor)
        prepared = executor.prepare(submission)
        job_id = uuid.uuid4().hex
        user = user_of(submission)
        if self.fairness is not None and user is not None:
            self.fairness.admit(user, job_id)
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        started = threading.Event()
        key = (prepared.language.name, executor.sandbox.name)
        job = Job(future, started, executor.estimates.get(key), id=job_id)
        future.set_running_or_notify_cancel()
        started.set()
        try:
            future.set_result(executor._judge(prepared, time.monotonic()))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            if self.fairness is not None and user is not None:
                self.fairness.release(user, job_id)
        return job

    def metrics(self) -> dict[str, QueueMetrics]:
        return {}

    def close(self) -> None:
        pass


class LocalDispatcher:
    """A bounded priority queue and worker threads (default: the executor's
    ``max_workers``, one per sandbox slot).

    Higher ``priority`` runs first; equal priorities run in submission order.
    :class:`~codeexec.QueueFull` when ``max_queued`` jobs wait (backpressure: the queue
    never grows without bound). ``job.cancel()`` drops a queued job and stops a running
    one (its sandboxed run is killed).
    """

    name = "local"

    def __init__(
        self,
        *,
        workers: int | None = None,
        max_queued: int = 10_000,
        fairness: Fairness | None = None,
    ) -> None:
        if max_queued < 1:
            raise CodeExecError(f"max_queued must be at least 1, got {max_queued}")
        self.workers = workers
        self.max_queued = max_queued
        self.fairness = fairness
        self._executor: Executor | None = None
        self._heap: list[tuple[int, int, _Entry]] = []
        self._sequence = itertools.count()
        self._cond = threading.Condition()
        self._queued = 0  # live (not cancelled) entries in the heap
        self._cancelled_in_heap = 0
        self._running = 0
        self._mean_wait = 0.0
        self._closed = False
        self._threads: list[threading.Thread] = []

    def bind(self, executor: Executor) -> None:
        self._executor = executor
        count = self.workers or executor.max_workers
        for i in range(count):
            thread = threading.Thread(target=self._work, name=f"codeexec-job-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    # -------------------------------------------------------------- submit

    def submit(self, submission: Submission, *, priority: int = 0) -> Job:
        from .._executor import Job

        executor = _bound(self._executor)
        prepared = executor.prepare(submission)
        job_id = uuid.uuid4().hex
        user = user_of(submission)
        with self._cond:
            if self._closed:
                raise CodeExecError("the dispatcher is closed")
            if self._queued >= self.max_queued:
                raise QueueFull(f"{self._queued} jobs are queued (at most {self.max_queued})")
            if self.fairness is not None and user is not None:
                self.fairness.admit(user, job_id)
            key = (prepared.language.name, executor.sandbox.name)
            ahead = self._queued + self._running
            estimate = executor.estimates.get(key) * (1 + ahead / max(1, len(self._threads)))
            future: concurrent.futures.Future[Result] = concurrent.futures.Future()
            job = Job(future, threading.Event(), estimate, id=job_id, stoppable=True)
            entry = _Entry(job, prepared, time.monotonic(), user)
            heapq.heappush(self._heap, (-priority, next(self._sequence), entry))
            self._queued += 1
            self._cond.notify()
        future.add_done_callback(lambda _f: self._ended(entry))
        return job

    def _ended(self, entry: _Entry) -> None:
        if entry.started:
            return  # the worker released it before publishing the result
        with self._cond:  # cancelled while queued
            self._queued -= 1
            self._cancelled_in_heap += 1
            if self._cancelled_in_heap > 64 and self._cancelled_in_heap * 2 > len(self._heap):
                self._heap = [item for item in self._heap if not item[2].job._future.done()]
                heapq.heapify(self._heap)
                self._cancelled_in_heap = 0
        self._release(entry)

    def _release(self, entry: _Entry) -> None:
        if self.fairness is not None and entry.user is not None:
            self.fairness.release(entry.user, entry.job.id)

    # -------------------------------------------------------------- workers

    def _work(self) -> None:
        executor = _bound(self._executor)
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if not self._heap:
                    return
                _, _, entry = heapq.heappop(self._heap)
                future = entry.job._future
                if not future.set_running_or_notify_cancel():
                    self._cancelled_in_heap -= 1
                    continue
                entry.started = True
                self._queued -= 1
                self._running += 1
                waited = time.monotonic() - entry.enqueued
                self._mean_wait = 0.9 * self._mean_wait + 0.1 * waited
            entry.job._started.set()
            try:
                result = executor._judge(entry.prepared, entry.enqueued, entry.job.stop)
            except BaseException as exc:  # an infrastructure failure: the job fails
                self._finish(entry)
                future.set_exception(exc)
            else:
                self._finish(entry)
                if entry.job.claim():
                    future.set_result(result)
                else:  # cancel() won the race with the result: it said so, so it is
                    future.set_exception(JobCancelled(f"job {entry.job.id} was cancelled"))

    def _finish(self, entry: _Entry) -> None:
        """Free the job's place (and its user's) before its result is published, so a
        caller who saw the result may submit again at once."""
        with self._cond:
            self._running -= 1
        self._release(entry)

    # -------------------------------------------------------------- metrics

    def metrics(self) -> dict[str, QueueMetrics]:
        """The queue's length, jobs running, the oldest queued job's wait and the mean
        wait of recent jobs (seconds), for autoscaling."""
        now = time.monotonic()
        with self._cond:
            waiting = [e.enqueued for _, _, e in self._heap if not e.job._future.done()]
            return {
                "local": QueueMetrics(
                    length=self._queued,
                    running=self._running,
                    oldest_wait=now - min(waiting) if waiting else 0.0,
                    mean_wait=self._mean_wait,
                )
            }

    def close(self) -> None:
        """Cancel queued jobs, let running ones finish, stop the workers."""
        with self._cond:  # a Condition's lock is reentrant: cancel callbacks take it too
            self._closed = True
            queued, self._heap = [entry for _, _, entry in self._heap], []
            for entry in queued:
                entry.job._future.cancel()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


def _bound(executor: Executor | None) -> Executor:
    if executor is None:
        raise CodeExecError("the dispatcher is not bound to an executor (Executor(dispatcher=))")
    return executor
