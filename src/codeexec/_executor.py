"""The Executor: the one object a host talks to.

::

    with codeexec.Executor() as ex:                 # process sandbox, one slot per core
        result = ex.run(Submission(language="python", code="print(1)"))
        results = ex.run_many(submissions, progress=lambda done, total: ...)
        job = ex.submit(submission); job.result(timeout=10)
        result = await ex.arun(submission)

Every entry point validates a submission (language known, toolchain present) before
anything runs and raises a :class:`~codeexec.SubmissionError` or
:class:`~codeexec.ToolchainError` if it cannot run; a user program that fails is a
:class:`~codeexec.Result`, never an exception.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
from typing import Any

import attrs

from ._cached import CachedJudge
from ._errors import (
    CodeExecError,
    ConfigurationError,
    JobCancelled,
    JobTimeout,
    StorageError,
    SubmissionError,
)
from ._languages import Language, LanguageRegistry, default_languages
from ._model import Result, Submission, Verdict
from ._runner import Prepared, Runner
from .backends import get_sandbox
from .cache import make_cache
from .dispatch import Estimates, QueueMetrics, make_dispatcher
from .storage import make_store

log = logging.getLogger(__name__)

__all__ = ["Executor", "Job", "JobStatus", "as_completed"]


class JobStatus(enum.StrEnum):
    """Where a submitted job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Job:
    """A submission accepted for execution; returned at once by :meth:`Executor.submit`.

    ``job.result(timeout)`` waits for the :class:`Result`; ``await job`` does the same
    in asyncio (cancelling the awaiting task cancels the job); :func:`as_completed`
    yields jobs as they end; :meth:`cancel` stops a job, queued or running.
    """

    def __init__(
        self,
        future: concurrent.futures.Future[Result],
        started: threading.Event,
        estimated_time: float,
        *,
        id: str | None = None,
        stoppable: bool = False,
    ) -> None:
        self.id = id or uuid.uuid4().hex
        self._future = future
        self._started = started
        #: Set by :meth:`cancel`: the dispatcher running the job kills its sandboxed
        #: run and ends the job cancelled. None when the dispatcher cannot stop a job
        #: that has started (it runs elsewhere).
        self.stop: threading.Event | None = threading.Event() if stoppable else None
        # cancel() and the dispatcher's claim() decide, under this lock, which of them
        # wins a job that is finishing: a cancel that returned True ends it cancelled.
        self._end_lock = threading.Lock()
        self._claimed = False
        #: Seconds until this job is expected to be done: the moving average of its
        #: language and backend, times the queue ahead of it (0.0 before any was
        #: measured).
        self.estimated_time = estimated_time
        self.submitted_at = time.time()

    @property
    def status(self) -> JobStatus:
        f = self._future
        if f.cancelled():
            return JobStatus.CANCELLED
        if f.done():
            error = f.exception()
            if isinstance(error, JobCancelled):
                return JobStatus.CANCELLED
            return JobStatus.FAILED if error is not None else JobStatus.DONE
        return JobStatus.RUNNING if self._started.is_set() else JobStatus.QUEUED

    def result(self, timeout: float | None = None) -> Result:
        """Wait for the result; :class:`JobTimeout` if it is not there within
        ``timeout``, :class:`JobCancelled` (a ``CancelledError``) if it was cancelled."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise JobTimeout(f"job {self.id} did not finish within {timeout}s") from None
        except JobCancelled:
            raise
        except concurrent.futures.CancelledError:
            raise JobCancelled(f"job {self.id} was cancelled") from None

    def done(self) -> bool:
        return self._future.done()

    def cancel(self) -> bool:
        """Cancel the job. A queued job never runs; a running one has its sandboxed run
        killed (within about 50 ms) and no other test starts. True if the job will end
        cancelled; False if it had ended, or runs where it cannot be stopped."""
        if self._future.cancel():
            return True
        with self._end_lock:
            if self._future.done() or self.stop is None or self._claimed:
                return False
            self.stop.set()
            return True

    def claim(self) -> bool:
        """For dispatchers: called before publishing the job's result; False when the
        job was cancelled first (publish :class:`JobCancelled` instead)."""
        with self._end_lock:
            if self.stop is not None and self.stop.is_set():
                return False
            self._claimed = True
            return True

    def add_done_callback(self, fn: Callable[[Job], Any]) -> None:
        """Call ``fn(job)`` when the job ends (at once if it has)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def __await__(self) -> Generator[Any, None, Result]:
        return self._wait().__await__()

    async def _wait(self) -> Result:
        try:
            await asyncio.wrap_future(self._future)
        except asyncio.CancelledError:
            if not self._future.cancelled():  # our task was cancelled, not the job
                self.cancel()
                raise
        return self.result(0)

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.status.value}>"


def as_completed(jobs: Iterable[Job], timeout: float | None = None) -> Iterator[Job]:
    """Yield ``jobs`` as they end (done, failed or cancelled), like
    ``concurrent.futures.as_completed``; :class:`JobTimeout` if they have not all
    ended within ``timeout`` seconds."""
    by_future = {job._future: job for job in jobs}
    try:
        for future in concurrent.futures.as_completed(by_future, timeout):
            yield by_future[future]
    except concurrent.futures.TimeoutError:
        raise JobTimeout(f"jobs did not all end within {timeout}s") from None


def _report(progress: Callable[[int, int], Any] | None, done: int, total: int) -> None:
    """Call a progress callback; one that raises is logged, and judging goes on."""
    if progress is None:
        return
    try:
        progress(done, total)
    except Exception:
        log.exception("the progress callback raised (judging goes on)")


def _registry(languages: object) -> LanguageRegistry:
    """The ``languages`` option as a registry: a registry, Language objects, or None."""
    if languages is None:
        return LanguageRegistry(default_languages())
    if isinstance(languages, LanguageRegistry):
        return languages
    if isinstance(languages, list | tuple) and all(isinstance(x, Language) for x in languages):
        return LanguageRegistry(languages)
    raise ConfigurationError(
        "languages must be a LanguageRegistry or a list of Language objects"
        f" (to limit the built-in ones: LanguageRegistry(l for l in default_languages()"
        f" if l.name in ...)), got {languages!r:.80}"
    )


class Executor:
    """Runs submissions on a sandbox.

    :param sandbox: a :class:`~codeexec.backends.Sandbox` object, or a name
        (``"process"``, or a third party's entry point). A sandbox created from a name
        is owned and closed by the executor; an object passed in is not.
    :param languages: a :class:`LanguageRegistry` or a list of :class:`Language`
        (default: the built-in languages).
    :param max_workers: submissions judged at once by ``run_many``/``submit``
        (default: the sandbox's concurrency).
    :param sandbox_options: keyword arguments for a sandbox created from a name.
    :param cache: results by content key, so the same run never executes twice: a
        :class:`~codeexec.cache.LayeredCache`, one tier, a URL (``"memory://"``,
        ``"redis://127.0.0.1:6379/0"``, ``"sqlite:///results.db"``,
        ``"postgresql://..."``) or a list of them, fastest first. Default: no cache.
    :param store: keeps every submission and its result: a
        :class:`~codeexec.storage.Store`, or a directory (``Store.at(directory)``).
        The stored record's id is in ``result.metadata["submission_id"]`` (a host's own
        ``submission_id`` in the submission's metadata is kept and used). A store made
        here from a directory is closed by :meth:`close`. Default: nothing is stored.
    :param dispatcher: who runs what :meth:`submit` queues: ``"local"`` (the default:
        a bounded priority queue and worker threads here), ``"inline"``, or a
        dispatcher object (:class:`~codeexec.dispatch.LocalDispatcher` with options,
        ``CeleryDispatcher`` for workers on other machines). It is closed with the
        executor.
    """

    def __init__(
        self,
        sandbox: object = "process",
        *,
        languages: LanguageRegistry | None = None,
        max_workers: int | None = None,
        sandbox_options: dict[str, Any] | None = None,
        cache: object = None,
        store: object = None,
        dispatcher: object = None,
    ) -> None:
        self.languages = _registry(languages)
        if max_workers is not None and (
            isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1
        ):
            raise ConfigurationError(
                f"max_workers must be a whole number >= 1, got {max_workers!r}"
            )
        self._owns_sandbox = isinstance(sandbox, str)
        # A cache made here from URLs is ours to close; objects passed in are not.
        self._owns_cache = isinstance(cache, str) or (
            isinstance(cache, list | tuple) and all(isinstance(c, str) for c in cache)
        )
        self._owns_store = isinstance(store, str | os.PathLike)
        # Dispatcher, cache and store first: a bad one raises before any sandbox process
        # starts (the dispatcher's threads start only when bound, below).
        self.dispatcher = make_dispatcher(dispatcher)
        self.cache = make_cache(cache)
        try:
            self.store = make_store(store)
            self.sandbox = get_sandbox(sandbox, **(sandbox_options or {}))
        except BaseException:
            if self.cache is not None and self._owns_cache:
                self.cache.close()
            if self._owns_store and getattr(self, "store", None) is not None:
                self.store.close()
            raise
        self.runner = Runner(self.sandbox, self.languages, shared_artifacts=self.cache)
        self.max_workers = max_workers or max(1, self.sandbox.concurrency)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.max_workers, thread_name_prefix="codeexec"
        )
        self._cached = CachedJudge(self.cache, background=self._pool.submit) if self.cache else None
        #: Moving averages of judging time per (language, backend), for job estimates.
        self.estimates = Estimates()
        self.dispatcher.bind(self)
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ API

    def prepare(self, submission: Submission) -> Prepared:
        """Validate a submission and resolve its toolchain and fingerprint; nothing runs."""
        if self._closed:
            raise CodeExecError("the executor is closed")
        if not isinstance(submission, Submission):
            raise SubmissionError(f"expected a Submission, got {type(submission).__name__}")
        if self.store is not None:
            self.store.check(submission)  # a bad record id must not cost a judged result
        return self.runner.prepare(submission)

    def run(self, submission: Submission) -> Result:
        """Judge one submission in the calling thread and return its result."""
        return self._judge(self.prepare(submission), time.monotonic())

    def run_many(
        self,
        submissions: Iterable[Submission],
        *,
        progress: Callable[[int, int], Any] | None = None,
    ) -> list[Result]:
        """Judge many submissions concurrently; results come in the submissions' order.

        Every submission is validated first, so a bad one raises before any runs.
        ``progress(done, total)`` is called after each one finishes; if it raises, the
        error is logged and judging goes on (a progress bar must not cost results).
        """
        prepared = [self.prepare(s) for s in submissions]
        total = len(prepared)
        done = 0
        lock = threading.Lock()
        enqueued = time.monotonic()

        def one(p: Prepared) -> Result:
            nonlocal done
            result = self._judge(p, enqueued)
            if progress is not None:
                with lock:
                    done += 1
                    _report(progress, done, total)
            return result

        futures = [self._pool.submit(one, p) for p in prepared]
        return [f.result() for f in futures]

    def submit(self, submission: Submission, *, priority: int = 0) -> Job:
        """Queue a submission on the dispatcher; returns a :class:`Job` at once.

        Validation errors raise here, as do :class:`~codeexec.QueueFull` (the queue is at
        its bound) and :class:`~codeexec.RateLimited` (the submission's
        ``metadata["user_id"]`` is over its share). Higher ``priority`` runs sooner.
        """
        if self._closed:
            raise CodeExecError("the executor is closed")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise CodeExecError(f"priority must be an int, got {priority!r}")
        return self.dispatcher.submit(submission, priority=priority)

    def metrics(self) -> dict[str, QueueMetrics]:
        """Load per queue of the dispatcher (length, running, waits), for autoscaling."""
        return self.dispatcher.metrics()

    async def arun(self, submission: Submission) -> Result:
        """``run`` for asyncio: judged in the executor's pool, the event loop stays free.
        Cancelling the awaiting task kills the sandboxed run (within about 50 ms)."""
        prepared = self.prepare(submission)
        return await self._ajudge(prepared, time.monotonic())

    async def _ajudge(self, prepared: Prepared, enqueued: float) -> Result:
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, self._judge, prepared, enqueued, stop)
        except asyncio.CancelledError:
            stop.set()  # the pool's thread is not interrupted: its run is killed
            raise

    async def arun_many(
        self,
        submissions: Iterable[Submission],
        *,
        progress: Callable[[int, int], Any] | None = None,
    ) -> list[Result]:
        """``run_many`` for asyncio: results in the submissions' order. Every
        submission is validated first; cancelling the task stops every run."""
        results: list[Result | None] = []
        async for index, result in self.arun_as_completed(submissions, progress=progress):
            results.extend([None] * (index + 1 - len(results)))
            results[index] = result
        return results  # type: ignore[return-value]  # every index was filled

    async def arun_as_completed(
        self,
        submissions: Iterable[Submission],
        *,
        progress: Callable[[int, int], Any] | None = None,
    ) -> AsyncIterator[tuple[int, Result]]:
        """Judge many submissions concurrently; yield ``(index, result)`` as each ends.

        Every submission is validated first, so a bad one raises before any runs.
        Leaving the loop early (``break``, an exception, a cancelled task) stops the
        runs still going and drops the queued ones."""
        prepared = [self.prepare(s) for s in submissions]
        enqueued = time.monotonic()
        tasks = {
            asyncio.ensure_future(self._ajudge(p, enqueued)): index
            for index, p in enumerate(prepared)
        }
        pending = set(tasks)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    _report(progress, len(tasks) - len(pending), len(tasks))
                    yield tasks[task], result
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        """Wait for running jobs, then release the sandbox if this executor made it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.dispatcher.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.runner.close()
        if self._owns_sandbox:
            self.sandbox.close()
        if self.cache is not None and self._owns_cache:
            self.cache.close()
        if self.store is not None and self._owns_store:
            self.store.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _judge(
        self, prepared: Prepared, enqueued: float, stop: threading.Event | None = None
    ) -> Result:
        """Judge (through the cache, if any) and keep; :class:`JobCancelled` when
        ``stop`` is set before the result is there."""
        queue_time = time.monotonic() - enqueued
        # A checker whose data changed since the submission was prepared (while it
        # waited in a queue) would be judged with new data under the old key.
        if self._cached is not None and prepared.cacheable and prepared.checker_unchanged():
            result = self._cached.judge(
                prepared, lambda: self._execute(prepared, queue_time, stop), stop
            )
        else:
            result = self._execute(prepared, queue_time, stop)
        if stop is not None and stop.is_set():
            raise JobCancelled("the job was cancelled")  # its result is not the job's
        return self.keep(prepared.submission, result)

    def keep(self, submission: Submission, result: Result) -> Result:
        """Save a judged submission in the store (if any) and return its result with
        ``metadata["submission_id"]``; dispatchers that judge elsewhere call it when a
        result comes back. A store failure raises :class:`~codeexec.StorageError`
        with the result as its ``result`` attribute."""
        if self.store is None:
            return result
        try:
            ident = self.store.save(submission, result)
        except StorageError as exc:
            exc.result = result  # type: ignore[attr-defined]  # judged, but not kept
            raise
        return attrs.evolve(result, metadata={**result.metadata, "submission_id": ident})

    @property
    def stats(self) -> dict[str, int]:
        """Cache counters: hits, misses, executed, shared (waited for another's run),
        stale (served stale while refreshing). Empty without a cache."""
        return dict(self._cached.stats) if self._cached is not None else {}

    def _execute(
        self, prepared: Prepared, queue_time: float, stop: threading.Event | None = None
    ) -> Result:
        try:
            result = self.runner.judge(prepared, queue_time=queue_time, cancel=stop)
        except JobCancelled:
            raise
        except CodeExecError as exc:
            # The sandbox broke (not the user's program): an internal error result.
            log.error("internal error judging %s: %s", prepared.fingerprint[:12], exc)
            result = Result(
                verdict=Verdict.INTERNAL_ERROR,
                fingerprint=prepared.fingerprint,
                backend=self.sandbox.name,
                queue_time=queue_time,
                reproducibility=self.runner.reproducibility(prepared),
                metadata=dict(prepared.submission.metadata),
            )
        self.estimates.add((prepared.language.name, self.sandbox.name), result.total_time)
        return result

    def estimated_time(self, language: str) -> float:
        """Average seconds a submission in ``language`` has taken here (0.0 if unknown)."""
        return self.estimates.get((self.languages.get(language).name, self.sandbox.name))

    def __repr__(self) -> str:
        return f"Executor(sandbox={self.sandbox!r}, max_workers={self.max_workers})"
