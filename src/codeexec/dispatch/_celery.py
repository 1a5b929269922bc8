"""Celery: jobs judged by workers on any number of machines.

The host side is :class:`CeleryDispatcher`; the worker side is the ``codeexec.run`` task
of :func:`celery_app`, started by ``codeexec worker``. A submission travels as
``Submission.to_dict()`` (JSON) and its result comes back as ``Result.to_dict()``
through the result backend.

Settings that lose no job when a worker dies (set by :func:`celery_app`):

- ``task_acks_late`` and ``task_reject_on_worker_lost``: a job is acknowledged after it
  ran, and a job whose pool process died is put back;
- ``worker_prefetch_multiplier=1``: a worker holds one job beyond those it runs, so a
  dead worker strands as few as possible;
- ``visibility_timeout`` (Redis broker): a job taken by a worker that vanished whole
  (SIGKILL, a lost machine) is delivered again after this many seconds (workers look
  for such jobs every quarter of it); it must be longer than the longest run, or a
  slow run would be delivered twice;
- recycling: a worker's sandbox (its slot servers, where runs happen) is made anew
  after ``recycle_after`` jobs; with the prefork pool, the pool process is replaced
  after as many batches too (``worker_max_tasks_per_child``).

A job run twice after a crash is harmless: judging has no side effect outside the
sandbox, and with a cache the second run is a cache hit by fingerprint.

Untrusted code never runs in the Celery pool process: the task hands it to the worker's
sandbox (slot servers in their own cgroups), so an OOM or a fork bomb ends the run with
its verdict and the pool process goes on serving.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

try:
    import celery
    from celery import states
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError("the Celery dispatcher needs Celery: pip install 'codeexec[celery]'") from exc

from .._checkers import CallableChecker, checker_from_identity
from .._errors import CodeExecError, DispatchError, JobError, QueueFull, StorageError
from .._model import Result, Submission
from .._programs import CheckerProgram, Program
from ._base import QueueMetrics, user_of

if TYPE_CHECKING:
    from .._executor import Executor, Job
    from .._languages import Language
    from ._fairness import Fairness

log = logging.getLogger(__name__)

__all__ = ["CeleryDispatcher", "celery_app", "queue_name"]

TASK = "codeexec.judge"
#: kombu's Redis transport keeps message priorities in these steps, one list each (the
#: list of step 0 is named as the queue): a queue's length is the sum.
_PRIORITY_STEPS = (0, 3, 6, 9)
_PRIORITY_SEP = "\x06\x16"


def queue_name(backend: str, language: str | None) -> str:
    """The queue of jobs for ``backend`` in ``language`` (``codeexec.process.lang.c``);
    ``language=None`` is the backend's high queue (``codeexec.process.high``), for jobs
    submitted with a priority above 0. Workers take from their queues in sorted order,
    and ``high`` sorts before ``lang``: a high job is the next one a free worker takes."""
    return f"codeexec.{backend}.high" if language is None else f"codeexec.{backend}.lang.{language}"


def celery_app(
    broker: str,
    result_backend: str | None = None,
    *,
    app: celery.Celery | None = None,
    visibility_timeout: float = 300.0,
    recycle_after: int = 1000,
    result_expires: float = 86400.0,
) -> celery.Celery:
    """A Celery app (or the host's ``app``) configured for codeexec, with its task.

    :param broker: e.g. ``redis://127.0.0.1:6379/0`` or ``amqp://...``.
    :param result_backend: where results go back (default: the broker's URL).
    :param visibility_timeout: seconds after which a job taken by a vanished worker is
        delivered again (Redis broker); keep it above the longest run.
    :param recycle_after: jobs a worker's sandbox judges before it is made anew (and
        batches a prefork pool process takes before it is replaced).
    """
    own = app is None
    if app is None:
        app = celery.Celery("codeexec", broker=broker, backend=result_backend or broker)
    transport = {
        "visibility_timeout": visibility_timeout,
        # Look for jobs of vanished workers often: by default kombu sweeps every
        # 10 s x 10 (the throttle), so a redelivery could wait 100 s past the timeout.
        "unacked_restore_interval": max(1.0, min(10.0, visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": max(30, int(visibility_timeout)),
        # Take from the first non-empty queue in sorted order (see queue_name). kombu's
        # "priority" order follows a set's order, not the order the queues were given.
        "queue_order_strategy": "sorted",
    }
    # What the broker and the workers need for no job to be lost (a host's own app gets
    # these too: its workers serve codeexec's queues).
    app.conf.update(
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=recycle_after,
        codeexec_recycle_after=recycle_after,
        broker_transport_options={**(app.conf.broker_transport_options or {}), **transport},
        result_expires=result_expires,
        broker_connection_retry_on_startup=True,
    )
    if own:  # a host's app keeps its own serialization and logging choices
        app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            worker_hijack_root_logger=False,
        )
    app.task(
        name=TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        ignore_result=True,  # each job's states are stored by the task, under its id
        serializer="json",
    )(_run_task)
    return app


# ---------------------------------------------------------------------- worker side

_worker_executor: Executor | None = None
_worker_runs = 0  # jobs judged by the current executor
_worker_lock = threading.Lock()


def _run_task(task: Any, jobs: list[dict[str, Any]]) -> int:
    """The ``codeexec.judge`` task: judge a batch of jobs in this worker's sandbox.

    Each job's state (STARTED, then SUCCESS with its result, or FAILURE) is stored
    under the job's own id, so the host follows every job on its own. A job already
    done (the batch was delivered again after a worker died) or revoked (cancelled by
    its host) is skipped. Jobs run concurrently across the sandbox's slots. Returns how
    many ran.
    """
    states_of = _JobStates(task.backend)
    skip = (states.SUCCESS, states.REVOKED)
    todo = [
        job for job, status in zip(jobs, states_of.read(jobs), strict=True) if status not in skip
    ]
    executor = _executor_for(task.app, len(todo))

    def judge(job: dict[str, Any]) -> None:
        watch.begin(job["id"])
        try:
            result = executor.run(Submission.from_dict(job["submission"]))
        except Exception as exc:  # bad input that slipped through, a broken sandbox
            log.exception("job %s failed", job["id"])
            watch.end(job["id"])
            task.backend.mark_as_failure(job["id"], exc)
            return
        watch.end(job["id"])
        states_of.done(job["id"], result.to_dict())

    with _StartWatch(states_of) as watch:
        if len(todo) <= 1 or executor.max_workers == 1:
            for job in todo:
                judge(job)
        else:
            with concurrent.futures.ThreadPoolExecutor(executor.max_workers) as pool:
                list(pool.map(judge, todo))
    return len(todo)


class _StartWatch:
    """Stores STARTED for jobs that have run ``after`` seconds. Most jobs of a judge
    end within milliseconds: for them the state goes from PENDING to SUCCESS in one
    write (a host would rarely have seen the short RUNNING anyway); a longer run shows
    as RUNNING from ``after`` seconds in."""

    def __init__(self, states_of: _JobStates, after: float = 0.05) -> None:
        self.states_of = states_of
        self.after = after
        self._running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="codeexec-started", daemon=True)

    def __enter__(self) -> _StartWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def begin(self, job_id: str) -> None:
        with self._lock:
            self._running[job_id] = time.monotonic()

    def end(self, job_id: str) -> None:
        # After this, the watch never writes STARTED for the job: a final state written
        # next cannot be overwritten.
        with self._lock:
            self._running.pop(job_id, None)

    def _loop(self) -> None:
        while not self._stop.wait(self.after / 2):
            now = time.monotonic()
            with self._lock:
                due = [j for j, t in self._running.items() if now - t >= self.after]
                for job_id in due:
                    self.states_of.started(job_id)
                    del self._running[job_id]


class _JobStates:
    """Job states in the result backend, in the layout Celery's own results have (so
    ``AsyncResult(job_id)`` works too). On a key-value backend (Redis) a state is one
    write and all of a batch's states one read: Celery's ``store_result`` would read
    the old state first, twice as many round trips per job as the run needs."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.direct = hasattr(backend, "mget") and hasattr(backend, "get_key_for_task")

    def read(self, jobs: list[dict[str, Any]]) -> list[str]:
        if not self.direct:
            return [self.backend.get_task_meta(j["id"], cache=False)["status"] for j in jobs]
        keys = [self.backend.get_key_for_task(j["id"]) for j in jobs]
        raw = self.backend.mget(keys)
        return [states.PENDING if r is None else self.backend.decode(r)["status"] for r in raw]

    def _write(self, job_id: str, status: str, result: Any) -> None:
        if not self.direct:
            self.backend.store_result(job_id, result, status)
            return
        meta = {
            "status": status,
            "result": result,
            "traceback": None,
            "children": [],
            "date_done": None if status == states.STARTED else self.backend.app.now().isoformat(),
            "task_id": job_id,
        }
        self.backend.set(self.backend.get_key_for_task(job_id), self.backend.encode(meta))

    def started(self, job_id: str) -> None:
        self._write(job_id, states.STARTED, None)

    def done(self, job_id: str, result: dict[str, Any]) -> None:
        self._write(job_id, states.SUCCESS, result)


def _executor_for(app: celery.Celery, jobs: int) -> Executor:
    """This process's executor, made on its first batch (after the fork: a sandbox's
    slot servers must belong to the process that uses them), and made anew, sandbox
    and all, once it has judged ``codeexec_recycle_after`` jobs (between batches, so no
    run is cut short)."""
    global _worker_executor, _worker_runs
    with _worker_lock:
        recycle_after = int(app.conf.get("codeexec_recycle_after") or 0)
        if _worker_executor is not None and recycle_after and _worker_runs >= recycle_after:
            log.info("recycling the sandbox after %d jobs", _worker_runs)
            atexit.unregister(_worker_executor.close)
            _worker_executor.close()
            _worker_executor = None
        if _worker_executor is None:
            from billiard.process import current_process

            from .._executor import Executor

            conf = app.conf
            options = dict(conf.get("codeexec_sandbox_options") or {})
            sandbox = conf.get("codeexec_sandbox") or "process"
            if sandbox in ("process", "nsjail"):
                # Pool processes on one machine must not share run uids.
                slots = int(options.get("slots") or 1)
                index = getattr(current_process(), "index", 0) or 0
                options["slots"] = slots
                options["uid_base"] = int(conf.get("codeexec_uid_base") or 61000) + index * slots
            _worker_executor = Executor(
                sandbox,
                sandbox_options=options,
                cache=conf.get("codeexec_cache"),
                dispatcher="inline",
            )
            _worker_runs = 0
            atexit.register(_worker_executor.close)
        _worker_runs += jobs
        return _worker_executor


# ---------------------------------------------------------------------- host side


class _Pending:
    __slots__ = (
        "future", "started", "submission", "user", "queue", "key", "item", "submitted",
        "sent_at", "started_at",
    )  # fmt: skip

    def __init__(
        self, future: concurrent.futures.Future[Result], started: threading.Event,
        submission: Submission, user: str | None, queue: str, key: tuple[str, str],
        item: tuple[str, dict[str, Any], float],
    ) -> None:  # fmt: skip
        self.future = future
        self.submission = submission
        self.started = started
        self.user = user
        self.queue = queue
        self.key = key
        self.item = item  # what the outbox holds for it, kept to send it again
        self.submitted = time.monotonic()
        self.sent_at: float | None = None
        self.started_at: float | None = None


class CeleryDispatcher:
    """Sends jobs to Celery workers (``codeexec worker``) and collects their results.

    :param app: the host's Celery app, or None to make one from ``broker``.
    :param broker: the broker URL (with ``app=None``).
    :param result_backend: the result backend URL (default: the broker's).
    :param backend: the sandbox the workers run (names the queues:
        ``codeexec.<backend>.<language>`` and ``codeexec.<backend>.high``).
    :param max_queued: jobs this host may have waiting or running at once;
        :class:`~codeexec.QueueFull` beyond.
    :param fairness: per-user bounds (:class:`~codeexec.dispatch.RedisFairness` to share
        them between hosts).
    :param poll_interval: seconds between two looks at the results of pending jobs
        when the result backend cannot notify (a Redis backend notifies at once).
    :param sweep_interval: seconds between two reads of every pending job's state, as
        well as the notifications (which a lost connection can miss).
    :param batch_size: jobs sent in one message at most (under load; a lone job goes
        alone at once).
    :param visibility_timeout: the broker's (see :func:`celery_app`); a submission whose
        worst-case run time exceeds it is refused at submit.
    :param celery_options: more options for :func:`celery_app`.
    """

    name = "celery"

    def __init__(
        self,
        app: celery.Celery | None = None,
        *,
        broker: str | None = None,
        result_backend: str | None = None,
        backend: str = "process",
        max_queued: int = 100_000,
        fairness: Fairness | None = None,
        poll_interval: float = 0.05,
        sweep_interval: float = 1.0,
        batch_size: int = 8,
        visibility_timeout: float = 300.0,
        **celery_options: Any,
    ) -> None:
        if app is None and broker is None:
            raise CodeExecError("CeleryDispatcher needs a Celery app or a broker URL")
        self.app = celery_app(
            broker or "",
            result_backend,
            app=app,
            visibility_timeout=visibility_timeout,
            **celery_options,
        )
        self.visibility_timeout = visibility_timeout
        self.batch_size = batch_size
        self.backend = backend
        self.max_queued = max_queued
        self.fairness = fairness
        self.poll_interval = poll_interval
        self.sweep_interval = sweep_interval
        self._executor: Executor | None = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.RLock()
        self._mean_wait: dict[str, float] = {}
        self._closed = threading.Event()
        self._outbox: collections.deque[tuple[str, dict[str, Any], float]] = collections.deque()
        self._has_mail = threading.Condition(self._lock)
        self._poller = threading.Thread(target=self._poll, name="codeexec-celery", daemon=True)
        self._sender = threading.Thread(target=self._send, name="codeexec-send", daemon=True)
        self._broker_redis: Any = None

    def bind(self, executor: Executor) -> None:
        self._executor = executor
        self._poller.start()
        self._sender.start()

    # -------------------------------------------------------------- submit

    def submit(self, submission: Submission, *, priority: int = 0) -> Job:
        from .._executor import Job

        if self._executor is None:
            raise CodeExecError("the dispatcher is not bound to an executor")
        language = self._executor.languages.get(submission.language)
        if isinstance(submission.checker, CallableChecker):  # code cannot travel as data
            checker_from_identity(submission.checker.identity)  # raises SubmissionError
        payload = submission.to_dict()
        longest = _longest_run(submission, language)
        if longest >= self.visibility_timeout:
            raise DispatchError(
                f"this submission may take up to {longest:.0f} s, longer than the broker's"
                f" visibility timeout ({self.visibility_timeout:.0f} s): a worker would be"
                " thought dead while judging it; raise visibility_timeout"
            )
        job_id = uuid.uuid4().hex
        user = user_of(submission)
        queue = queue_name(self.backend, None if priority > 0 else language.name)
        key = (language.name, self.backend)
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        started = threading.Event()
        with self._lock:
            if self._closed.is_set():
                raise CodeExecError("the dispatcher is closed")
            if len(self._pending) >= self.max_queued:
                raise QueueFull(
                    f"{len(self._pending)} jobs are in flight (at most {self.max_queued})"
                )
            if self.fairness is not None and user is not None:
                self.fairness.admit(user, job_id)
            item = (queue, {"id": job_id, "submission": payload}, longest)
            self._pending[job_id] = _Pending(future, started, submission, user, queue, key, item)
            self._outbox.append(item)
            self._has_mail.notify()
        future.add_done_callback(lambda f: self._cancelled(job_id) if f.cancelled() else None)
        return Job(future, started, self._executor.estimates.get(key), id=job_id)

    def _send(self) -> None:
        """The sender thread: whatever is in the outbox goes out at once, in batches of
        up to ``batch_size`` jobs per queue (and half the visibility timeout of worst
        case run time). A lone job goes alone, without waiting; under load, jobs that
        arrive while a batch is being sent share the next message, so the cost of a
        message is spread over many jobs."""
        while True:
            with self._lock:
                while not self._outbox and not self._closed.is_set():
                    self._has_mail.wait()
                if not self._outbox:
                    return
                queue = self._outbox[0][0]
                batch: list[dict[str, Any]] = []
                budget = self.visibility_timeout / 2
                rest: collections.deque[tuple[str, dict[str, Any], float]] = collections.deque()
                while self._outbox:
                    item = self._outbox.popleft()
                    fits = len(batch) < self.batch_size and (not batch or item[2] <= budget)
                    if item[0] == queue and fits:
                        batch.append(item[1])
                        budget -= item[2]
                    else:
                        rest.append(item)
                self._outbox = rest + self._outbox
                now = time.monotonic()
                for job in batch:
                    pending = self._pending.get(job["id"])
                    if pending is not None:
                        pending.sent_at = now
            try:
                self.app.send_task(
                    TASK,
                    args=[batch],
                    queue=queue,
                    # Celery would otherwise build a repr of every submission for logs.
                    argsrepr=f"<{len(batch)} jobs>",
                    kwargsrepr="{}",
                )
            except Exception as exc:
                log.error("cannot send %d jobs to the broker: %s", len(batch), exc)
                for job in batch:
                    pending = self._forget(job["id"])
                    if pending is not None and pending.future.set_running_or_notify_cancel():
                        pending.future.set_exception(
                            DispatchError(f"cannot send the job to the broker: {exc}")
                        )

    def _cancelled(self, job_id: str) -> None:
        # A worker skips a job whose state is REVOKED; one already running finishes and
        # its result is ignored.
        with self._lock:
            self._outbox = collections.deque(i for i in self._outbox if i[1]["id"] != job_id)
        if self._forget(job_id) is not None:
            self.app.backend.mark_as_revoked(job_id, "cancelled by its host")

    def _forget(self, job_id: str) -> _Pending | None:
        with self._lock:
            pending = self._pending.pop(job_id, None)
        if pending is not None and self.fairness is not None and pending.user is not None:
            self.fairness.release(pending.user, job_id)
        return pending

    # -------------------------------------------------------------- results

    def _poll(self) -> None:
        """Collect states and results: from the Redis backend's notifications as they
        are stored (one message each, no polling), with a sweep of every pending job
        each ``sweep_interval`` for anything missed (stored before we listened, a lost
        connection); other backends are swept every ``poll_interval``."""
        backend = self.app.backend
        bulk = hasattr(backend, "mget") and hasattr(backend, "get_key_for_task")
        listener = self._listen(backend)
        next_sweep = 0.0
        while not self._closed.is_set():
            if listener is not None:
                try:
                    self._drain(backend, listener)
                except Exception as exc:  # reconnects on the next round; sweeps cover it
                    log.warning("result notifications failed (%s)", exc)
                    listener = None
            else:
                self._closed.wait(self.poll_interval)
            if time.monotonic() >= next_sweep:
                interval = self.sweep_interval if listener is not None else self.poll_interval
                next_sweep = time.monotonic() + interval
                self._sweep(backend, bulk)
                if listener is None and bulk:
                    listener = self._listen(backend)
        if listener is not None:
            listener.close()

    def _listen(self, backend: Any) -> Any:
        client = getattr(backend, "client", None)
        if client is None or not hasattr(client, "pubsub"):
            return None
        try:
            listener = client.pubsub(ignore_subscribe_messages=True)
            listener.psubscribe(backend.get_key_for_task("*"))
            return listener
        except Exception as exc:
            log.warning("cannot listen for results (%s); polling", exc)
            return None

    def _drain(self, backend: Any, listener: Any) -> None:
        message = listener.get_message(timeout=self.poll_interval)
        prefix = _text(backend.get_key_for_task("x"))[:-1]
        while message is not None:
            job_id = _text(message["channel"])[len(prefix) :]
            if job_id in self._pending:
                self._update(job_id, backend.decode_result(message["data"]))
            message = listener.get_message(timeout=0)

    def _sweep(self, backend: Any, bulk: bool) -> None:
        with self._lock:
            ids = list(self._pending)
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            try:
                metas = self._metas(backend, chunk) if bulk else self._each(chunk)
            except Exception as exc:  # the backend is down: try again later
                log.warning("cannot read results (%s); retrying", exc)
                return
            for job_id, meta in zip(chunk, metas, strict=True):
                if meta is not None:
                    self._update(job_id, meta)
            if bulk:
                self._resend_lost([i for i, m in zip(chunk, metas, strict=True) if m is None])

    def _resend_lost(self, stateless: list[str]) -> None:
        """Send again the jobs whose message the broker lost.

        kombu's Redis transport pops a message and then, in a second step, records it
        as unacknowledged: a worker killed between the two loses the message. A job
        sent more than twice the visibility timeout ago, with no state (no worker took
        it: a worker that takes a batch starts its jobs within half the timeout, and a
        dead worker's batch is back in the queue after the timeout), while its queue is
        empty, was lost that way. Sending it again is harmless: a worker skips a job
        that is done, and judging one twice gives the same result.
        """
        now = time.monotonic()
        with self._lock:
            overdue = [
                p
                for job_id in stateless
                if (p := self._pending.get(job_id)) is not None
                and p.started_at is None
                and p.sent_at is not None
                and now - p.sent_at > 2 * self.visibility_timeout
            ]
        queues = {p.queue for p in overdue}
        empty = {q for q in queues if self._broker_length(q) == 0}
        lost = [p for p in overdue if p.queue in empty]
        if lost:
            log.warning("sending %d jobs again: the broker lost their message", len(lost))
            with self._lock:
                for p in lost:
                    p.sent_at = None
                    self._outbox.append(p.item)
                self._has_mail.notify()

    @staticmethod
    def _metas(backend: Any, ids: list[str]) -> list[dict[str, Any] | None]:
        raw = backend.mget([backend.get_key_for_task(i) for i in ids])
        return [None if r is None else backend.decode_result(r) for r in raw]

    def _each(self, ids: list[str]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for job_id in ids:
            result = self.app.AsyncResult(job_id)
            state = result.state
            out.append(None if state == states.PENDING else {"status": state, "result": None})
            if state in states.READY_STATES:
                out[-1] = {"status": state, "result": result.get(propagate=False)}
        return out

    def _update(self, job_id: str, meta: dict[str, Any]) -> None:
        status = meta.get("status")
        with self._lock:
            pending = self._pending.get(job_id)
        if pending is None:
            return
        begun = status == states.STARTED or status in states.READY_STATES
        if begun and pending.started_at is None:
            if not pending.future.set_running_or_notify_cancel():
                return  # cancelled meanwhile
            pending.started_at = time.monotonic()
            pending.started.set()
            waited = pending.started_at - pending.submitted
            old = self._mean_wait.get(pending.queue, waited)
            self._mean_wait[pending.queue] = 0.9 * old + 0.1 * waited
        if status not in states.READY_STATES:
            return
        self._forget(job_id)
        if status == states.SUCCESS:
            result = Result.from_dict(meta["result"])
            assert self._executor is not None
            self._executor.estimates.add(pending.key, result.total_time)
            try:
                result = self._executor.keep(pending.submission, result)
            except StorageError as exc:
                pending.future.set_exception(exc)
                return
            pending.future.set_result(result)
        elif status == states.REVOKED:
            pending.future.set_exception(JobError(f"job {job_id} was revoked"))
        else:
            pending.future.set_exception(
                DispatchError(f"job {job_id} failed on its worker: {meta.get('result')!r}")
            )

    # -------------------------------------------------------------- metrics

    def metrics(self) -> dict[str, QueueMetrics]:
        """Per queue: this host's jobs waiting and running, its oldest waiting job's
        wait, the mean wait, and the messages (batches of jobs) waiting in the broker
        for every host, when the broker is Redis."""
        now = time.monotonic()
        with self._lock:
            pendings = list(self._pending.values())
        queues = {p.queue for p in pendings} | set(self._mean_wait)
        out = {}
        for queue in sorted(queues):
            mine = [p for p in pendings if p.queue == queue]
            waiting = [p.submitted for p in mine if p.started_at is None]
            out[queue] = QueueMetrics(
                length=len(waiting),
                running=sum(1 for p in mine if p.started_at is not None),
                oldest_wait=now - min(waiting) if waiting else 0.0,
                mean_wait=self._mean_wait.get(queue, 0.0),
                backlog=self._broker_length(queue),
            )
        return out

    def _broker_length(self, queue: str) -> int | None:
        url = self.app.conf.broker_url or ""
        if not url.startswith(("redis://", "rediss://")):
            return None
        try:
            if self._broker_redis is None:
                import redis

                self._broker_redis = redis.Redis.from_url(url)
            names = [queue] + [f"{queue}{_PRIORITY_SEP}{s}" for s in _PRIORITY_STEPS[1:]]
            return int(sum(self._broker_redis.llen(n) for n in names))
        except Exception:  # metrics are advice: never fail for them
            return None

    def close(self) -> None:
        """Stop collecting results; jobs still in flight fail with JobError here (the
        workers finish them; a cache keeps their results for whoever asks again)."""
        with self._lock:
            self._closed.set()
            self._outbox.clear()  # not sent: these fail below with the rest
            self._has_mail.notify_all()
        for thread in (self._sender, self._poller):
            if thread.is_alive():
                thread.join()
        with self._lock:
            left = list(self._pending)
        for job_id in left:
            pending = self._forget(job_id)
            if pending is not None and not pending.future.done():
                pending.future.set_exception(JobError(f"job {job_id}: the dispatcher closed"))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _longest_run(submission: Submission, language: Language) -> float:
    """Seconds a submission can take at most: its compile steps (its own and its
    problem's programs'), every test at its wall-time limit (with what judges it), and
    every distinct generator run."""
    checker, interactor = submission.checker, submission.interactor
    programs = [p for p in (checker, interactor, *submission.generators) if isinstance(p, Program)]
    total = sum(p.compile_limits.effective_wall_time for p in programs)
    if language.compiled:
        total += submission.compile_limits.effective_wall_time
    for test in submission.effective_tests:
        wall = language.run_limits(test.applied(submission.limits)).effective_wall_time
        if interactor is not None:
            wall = max(wall + 1, interactor.limits.effective_wall_time)
        if isinstance(checker, CheckerProgram):
            wall += checker.limits.effective_wall_time
        total += wall
    walls = {g.name: g.limits.effective_wall_time for g in submission.generators}
    specs = {t.generate for t in submission.effective_tests if t.generate is not None}
    return total + sum(walls[spec[0]] for spec in specs)
