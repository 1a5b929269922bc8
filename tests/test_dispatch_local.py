"""The local dispatcher behind Executor.submit, and per-user fairness."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import threading
import time

import pytest

import codeexec
from codeexec import JobCancelled, JobStatus, QueueFull, RateLimited
from codeexec.dispatch import (
    FairnessPolicy,
    LocalDispatcher,
    MemoryFairness,
    RedisFairness,
)


def echo(i: int, user: str | None = None) -> codeexec.Submission:
    return codeexec.Submission(
        language="bash",
        code=f"echo {i}",
        tests=[codeexec.TestCase(expected=f"{i}\n")],
        metadata={} if user is None else {"user_id": user},
    )


def sleeper(seconds: float) -> codeexec.Submission:
    return codeexec.Submission(
        language="bash", code=f"sleep {seconds}", limits=codeexec.Limits(wall_time=30)
    )


@pytest.fixture
def one_worker(process_sandbox):
    with codeexec.Executor(process_sandbox, dispatcher=LocalDispatcher(workers=1)) as ex:
        yield ex


def wait_running(job, timeout=10.0):
    deadline = time.monotonic() + timeout
    while job.status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, job.status
        time.sleep(0.005)


def test_submit_returns_at_once_and_moves_through_its_states(one_worker):
    blocker = one_worker.submit(sleeper(0.5))
    started = time.monotonic()
    job = one_worker.submit(echo(1))
    assert time.monotonic() - started < 0.2
    wait_running(blocker)
    assert job.status is JobStatus.QUEUED
    seen = []
    job.add_done_callback(lambda j: seen.append(j.status))
    result = job.result(timeout=30)
    assert result.verdict is codeexec.Verdict.ACCEPTED
    assert job.status is JobStatus.DONE and seen == [JobStatus.DONE]


def test_higher_priority_runs_first(one_worker):
    blocker = one_worker.submit(sleeper(0.4))
    wait_running(blocker)
    order: list[str] = []
    low = [one_worker.submit(echo(i)) for i in range(3)]
    high = one_worker.submit(echo(99), priority=5)
    for name, job in [("high", high)] + [(f"low{i}", j) for i, j in enumerate(low)]:
        job.add_done_callback(lambda _j, n=name: order.append(n))
    for job in [high, *low]:
        job.result(timeout=30)
    assert order == ["high", "low0", "low1", "low2"]


def test_a_queued_job_is_dropped_and_a_running_one_stopped_by_cancel(one_worker, tmp_path):
    """Cancelling a running job kills its sandboxed run: nothing after the kill runs."""
    marker = tmp_path / "after"
    os.chmod(tmp_path, 0o777)  # the run's uid writes the marker if it is not stopped
    blocker = one_worker.submit(
        codeexec.Submission(
            language="bash",
            code=f"sleep 3; touch {marker}",
            limits=codeexec.Limits(wall_time=30),
        )
    )
    wait_running(blocker)
    queued = one_worker.submit(echo(1))
    assert queued.cancel()
    assert queued.status is JobStatus.CANCELLED
    with pytest.raises(JobCancelled, match="cancelled"):
        queued.result(timeout=1)
    started = time.monotonic()
    assert blocker.cancel()
    with pytest.raises(concurrent.futures.CancelledError):  # JobCancelled is one too
        blocker.result(timeout=10)
    assert time.monotonic() - started < 1.5  # killed, not waited for
    assert blocker.status is JobStatus.CANCELLED
    assert not blocker.cancel()  # it has ended
    time.sleep(3.2)
    assert not marker.exists()
    assert one_worker.submit(echo(2)).result(timeout=30).ok  # the slot serves the next
    assert one_worker.metrics()["local"].length == 0


def test_jobs_as_completed_and_awaited(one_worker):
    # The worker is busy first, so the fast jobs' priority puts them before the slow.
    blocker = one_worker.submit(sleeper(0.3))
    wait_running(blocker)
    slow = one_worker.submit(sleeper(0.6))
    fast = [one_worker.submit(echo(i), priority=1) for i in range(3)]
    order = list(codeexec.as_completed([slow, *fast], timeout=30))
    assert set(order) == {slow, *fast} and order[-1] is slow

    async def awaited():
        return await one_worker.submit(echo(7))

    assert asyncio.run(awaited()).tests[0].stdout == "7\n"
    with pytest.raises(codeexec.JobTimeout):
        list(codeexec.as_completed([one_worker.submit(sleeper(1))], timeout=0.05))


def test_a_full_queue_is_queue_full_and_loses_nothing_queued(process_sandbox):
    dispatcher = LocalDispatcher(workers=1, max_queued=2)
    with codeexec.Executor(process_sandbox, dispatcher=dispatcher) as ex:
        blocker = ex.submit(sleeper(0.4))
        wait_running(blocker)
        queued = [ex.submit(echo(i)) for i in range(2)]
        with pytest.raises(QueueFull, match="2 jobs are queued"):
            ex.submit(echo(3))
        metrics = ex.metrics()["local"]
        assert (metrics.length, metrics.running) == (2, 1)
        assert metrics.oldest_wait > 0
        assert [j.result(timeout=30).tests[0].stdout for j in queued] == ["0\n", "1\n"]
        ex.submit(echo(4)).result(timeout=30)  # room again


def test_estimates_grow_with_the_queue_ahead(one_worker):
    for i in range(3):
        one_worker.submit(echo(i)).result(timeout=30)
    alone = one_worker.submit(echo(5))
    alone.result(timeout=30)
    assert alone.estimated_time > 0
    blocker = one_worker.submit(sleeper(0.3))
    jobs = [one_worker.submit(echo(i)) for i in range(5)]
    assert jobs[-1].estimated_time > jobs[0].estimated_time > 0
    for job in [blocker, *jobs]:
        job.result(timeout=30)


def test_inline_dispatcher_runs_in_the_caller(process_sandbox):
    with codeexec.Executor(process_sandbox, dispatcher="inline") as ex:
        job = ex.submit(echo(7))
        assert job.done() and job.status is JobStatus.DONE
        assert job.result().tests[0].stdout == "7\n"
    with pytest.raises(codeexec.CodeExecError, match="unknown dispatcher"):
        codeexec.Executor(process_sandbox, dispatcher="carrier-pigeon")


def test_bad_submissions_raise_before_anything_is_queued(one_worker):
    with pytest.raises(codeexec.UnknownLanguageError):
        one_worker.submit(codeexec.Submission(language="cobol", code="x"))
    with pytest.raises(codeexec.CodeExecError, match="priority"):
        one_worker.submit(echo(1), priority="high")  # type: ignore[arg-type]
    assert one_worker.metrics()["local"].length == 0


# ---------------------------------------------------------------------- fairness


def test_a_user_over_the_rate_is_rate_limited_others_are_not(process_sandbox):
    fairness = MemoryFairness(FairnessPolicy(rate=2.0, burst=3))
    with codeexec.Executor(process_sandbox, dispatcher=LocalDispatcher(fairness=fairness)) as ex:
        jobs = [ex.submit(echo(i, user="greedy")) for i in range(3)]
        with pytest.raises(RateLimited) as info:
            ex.submit(echo(9, user="greedy"))
        assert 0 < info.value.retry_after <= 0.5
        jobs.append(ex.submit(echo(10, user="patient")))  # another user is unaffected
        jobs.append(ex.submit(echo(11)))  # as is a submission without a user
        time.sleep(info.value.retry_after + 0.01)
        jobs.append(ex.submit(echo(12, user="greedy")))
        assert all(j.result(timeout=30).ok for j in jobs)


def test_a_cap_on_jobs_in_flight_per_user(process_sandbox):
    fairness = MemoryFairness(FairnessPolicy(max_in_flight=2))
    with codeexec.Executor(
        process_sandbox, dispatcher=LocalDispatcher(workers=1, fairness=fairness)
    ) as ex:
        first = ex.submit(echo(0, user="u"))
        second = ex.submit(echo(1, user="u"))
        with pytest.raises(RateLimited, match="2 jobs in flight"):
            ex.submit(echo(2, user="u"))
        first.result(timeout=30)
        second.result(timeout=30)
        ex.submit(echo(3, user="u")).result(timeout=30)
        cancelled = ex.submit(echo(4, user="u"))
        cancelled.cancel()
        ex.submit(echo(5, user="u")).result(timeout=30)


def test_redis_fairness_is_shared_between_hosts(redis_server):
    policy = FairnessPolicy(rate=1.0, burst=2, max_in_flight=3, in_flight_ttl=1.0)
    prefix = f"t{time.monotonic_ns()}:"
    host_a = RedisFairness.from_url(policy, redis_server.url, prefix=prefix)
    host_b = RedisFairness.from_url(policy, redis_server.url, prefix=prefix)
    host_a.admit("alice", "j1")
    host_b.admit("alice", "j2")
    with pytest.raises(RateLimited, match="jobs/s") as info:
        host_a.admit("alice", "j3")  # the burst of 2 is spent, across both hosts
    assert 0 < info.value.retry_after <= 1.0
    host_b.admit("bob", "j4")
    time.sleep(1.05)  # a token back; j1 and j2 stop counting (their hosts "died")
    host_a.admit("alice", "j5")
    host_a.release("alice", "j5")


def test_redis_fairness_caps_jobs_in_flight(redis_server):
    policy = FairnessPolicy(max_in_flight=2)
    prefix = f"t{time.monotonic_ns()}:"
    fairness = RedisFairness.from_url(policy, redis_server.url, prefix=prefix)
    fairness.admit("u", "a")
    fairness.admit("u", "b")
    with pytest.raises(RateLimited, match="2 jobs in flight"):
        fairness.admit("u", "c")
    fairness.release("u", "a")
    fairness.admit("u", "c")


def test_fairness_policy_validates():
    with pytest.raises(codeexec.DispatchError):
        FairnessPolicy(rate=0)
    with pytest.raises(codeexec.DispatchError):
        FairnessPolicy(max_in_flight=-1)


# ---------------------------------------------------------------------- scale


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
def test_ten_thousand_queued_jobs_all_complete_in_flat_memory(process_sandbox):
    total = 10_000
    done = threading.Semaphore(0)
    wrong: list[int] = []
    marks: dict[int, int] = {}
    completed = 0
    lock = threading.Lock()

    def finished(job, i):
        nonlocal completed
        result = job.result()
        if result.tests[0].stdout != f"{i}\n" or not result.ok:
            wrong.append(i)
        with lock:
            completed += 1
            if completed in (2_000, total):
                gc.collect()
                marks[completed] = rss()
        done.release()

    with codeexec.Executor(process_sandbox, dispatcher=LocalDispatcher(max_queued=total)) as ex:
        for i in range(total):
            ex.submit(echo(i)).add_done_callback(lambda j, i=i: finished(j, i))
        assert ex.metrics()["local"].length > 0
        deadline = time.monotonic() + 600
        for _ in range(total):
            assert done.acquire(timeout=max(0.0, deadline - time.monotonic()))
        dispatcher = ex.dispatcher
        assert dispatcher.metrics()["local"].length == 0 and dispatcher._heap == []
    assert wrong == []
    growth = marks[total] - marks[2_000]
    print(
        f"\nRSS after 2,000 jobs {marks[2_000] >> 20} MiB, after {total}: {marks[total] >> 20} MiB"
    )
    assert growth < 16 << 20, f"memory grew {growth >> 20} MiB over 8,000 jobs"


def test_a_cancel_that_says_true_always_ends_the_job_cancelled(one_worker):
    """cancel() racing the end of a job: True means the job ends cancelled."""
    import random

    outcomes = []
    for _ in range(30):
        job = one_worker.submit(echo(1))
        time.sleep(random.uniform(0, 0.03))
        said = job.cancel()
        try:
            job.result(timeout=30)
            ended = "done"
        except JobCancelled:
            ended = "cancelled"
        outcomes.append((said, ended))
        assert ended == ("cancelled" if said else "done"), outcomes
