"""Jobs through Celery: a real redis-server as broker and result backend, real
``codeexec worker`` processes."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time

import pytest

import codeexec
from codeexec import JobStatus, QueueFull, RateLimited, SubmissionError, Verdict
from codeexec.dispatch import CeleryDispatcher, FairnessPolicy, RedisFairness
from services import CeleryWorker

_tests = itertools.count()  # a Redis database (1-15) per test: no job crosses tests
_uids = itertools.count(62000, 100)


@pytest.fixture
def broker(redis_server):
    return redis_server.url.rsplit("/", 1)[0] + f"/{1 + next(_tests) % 15}"


@pytest.fixture
def workers(broker):
    started: list[CeleryWorker] = []

    def start(count: int = 1, **options: object) -> list[CeleryWorker]:
        new = [
            CeleryWorker(broker, f"w{len(started) + i}", uid_base=next(_uids), **options).start()
            for i in range(count)
        ]
        started.extend(new)
        return new

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def executor(broker):
    dispatcher = CeleryDispatcher(broker=broker, visibility_timeout=8)
    with codeexec.Executor(dispatcher=dispatcher) as ex:
        yield ex


def echo(i: int, **metadata: object) -> codeexec.Submission:
    return codeexec.Submission(
        language="bash",
        code=f"echo $(({i} * 7))",
        tests=[codeexec.TestCase(expected=f"{i * 7}\n")],
        metadata=metadata,
    )


def in_flight(worker: CeleryWorker) -> set[str]:
    """Batches the worker has taken and not finished, from its log."""
    log = worker.output()
    received = set(re.findall(r"codeexec\.judge\[([\w-]+)\] received", log))
    return received - set(re.findall(r"codeexec\.judge\[([\w-]+)\] succeeded", log))


def test_500_jobs_survive_a_worker_killed_midway(workers, executor):
    first, second = workers(2)
    jobs = [executor.submit(echo(i)) for i in range(500)]
    deadline = time.monotonic() + 120
    while sum(j.done() for j in jobs) < 150:
        assert time.monotonic() < deadline, "the workers made no progress"
        time.sleep(0.02)
    while not in_flight(first):  # kill it while it holds a batch
        assert time.monotonic() < deadline
        time.sleep(0.002)
    first.kill()  # SIGKILL, worker and pool at once: its batch is unacknowledged
    time.sleep(0.5)
    first.start()
    try:
        results = [j.result(timeout=90) for j in jobs]
    except Exception:
        import redis

        client = redis.Redis.from_url(executor.dispatcher.app.conf.broker_url)
        stuck = [j.id for j in jobs if not j.done()]
        print("stuck:", stuck[:5], "of", len(stuck))
        print("keys:", sorted(k.decode() for k in client.keys("*") if b"meta" not in k))
        print("unacked:", client.hgetall("unacked"))
        print("meta:", client.get(f"celery-task-meta-{stuck[0]}"))
        print(first.output()[-6000:], second.output()[-6000:], sep="\n-----\n")
        raise
    wrong = [i for i, r in enumerate(results) if r.verdict is not Verdict.ACCEPTED]
    assert wrong == []
    assert [r.tests[0].stdout for r in results] == [f"{i * 7}\n" for i in range(500)]
    assert all(j.status is JobStatus.DONE for j in jobs)


def test_an_oom_and_a_fork_bomb_get_their_verdicts_and_the_worker_serves_on(workers, executor):
    workers(1)
    memory_bomb = codeexec.Submission(
        language="python",
        code="x = bytearray(512 << 20)\nprint(len(x))",
        limits=codeexec.Limits(memory="64M", wall_time=5),
        # Python's syntax check fits these (the broker gives a job 8 s in all).
        compile_limits=codeexec.Limits(cpu_time=1, wall_time=2),
    )
    fork_bomb = codeexec.Submission(
        language="bash",
        code=":(){ :|:& };:",
        limits=codeexec.Limits(pids=16, wall_time=2, cpu_time=1),
    )
    assert executor.submit(memory_bomb).result(timeout=60).verdict in (
        Verdict.MEMORY_LIMIT_EXCEEDED,
        Verdict.RUNTIME_ERROR,
    )
    bombed = executor.submit(fork_bomb).result(timeout=60)
    assert bombed.verdict is not Verdict.INTERNAL_ERROR
    after = [executor.submit(echo(i)) for i in range(5)]
    assert [j.result(timeout=60).ok for j in after] == [True] * 5


def test_high_priority_jobs_overtake_the_queue(broker, workers):
    # Results noticed from notifications only (a sweep takes them in submission order).
    dispatcher = CeleryDispatcher(broker=broker, visibility_timeout=8, sweep_interval=600)
    with codeexec.Executor(dispatcher=dispatcher) as executor:
        high_priority_overtakes(executor, workers)


def high_priority_overtakes(executor, workers):
    normal = [executor.submit(echo(i)) for i in range(40)]
    high = executor.submit(echo(999), priority=5)
    metrics = executor.metrics()
    assert metrics["codeexec.process.lang.bash"].length == 40
    assert metrics["codeexec.process.high"].length == 1
    time.sleep(0.2)  # the sender has sent them all by now
    assert executor.metrics()["codeexec.process.lang.bash"].backlog >= 40 // 8
    order: list[str] = []  # results are noticed in the order the worker stored them
    high.add_done_callback(lambda _j: order.append("high"))
    for job in normal:
        job.add_done_callback(lambda _j: order.append("normal"))
    workers(1)
    assert high.result(timeout=60).ok
    assert all(j.result(timeout=60).ok for j in normal)
    assert order[0] == "high" and len(order) == 41


def test_a_queued_job_can_be_cancelled(workers, executor):
    jobs = [executor.submit(echo(i)) for i in range(5)]
    assert jobs[4].cancel()
    assert jobs[4].status is JobStatus.CANCELLED
    workers(1)
    assert all(j.result(timeout=60).ok for j in jobs[:4])
    with pytest.raises(codeexec.JobError):
        jobs[4].result(timeout=1)


def test_queue_full_rate_limits_and_bad_input(broker, redis_server):
    fairness = RedisFairness.from_url(
        FairnessPolicy(max_in_flight=2), redis_server.url, prefix=f"{broker}:"
    )
    dispatcher = CeleryDispatcher(broker=broker, max_queued=3, fairness=fairness)
    with codeexec.Executor(dispatcher=dispatcher) as ex:
        ex.submit(echo(1, user_id="u"))
        ex.submit(echo(2, user_id="u"))
        with pytest.raises(RateLimited):
            ex.submit(echo(3, user_id="u"))
        ex.submit(echo(4, user_id="v"))
        with pytest.raises(QueueFull):
            ex.submit(echo(5))
        with pytest.raises(SubmissionError, match="callable checker"):
            ex.submit(codeexec.Submission(language="bash", code="echo", checker=lambda *a: True))
        with pytest.raises(codeexec.UnknownLanguageError):
            ex.submit(codeexec.Submission(language="cobol", code="x"))
        slow = codeexec.Submission(
            language="bash", code="sleep 1", tests=[codeexec.TestCase()] * 3,
            limits=codeexec.Limits(wall_time=120),
        )  # fmt: skip
        with pytest.raises(codeexec.DispatchError, match="visibility timeout"):
            ex.submit(slow)  # 360 s at worst: a worker would be thought dead meanwhile


def children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if ppid == pid:
                found.add(int(entry))
    return found


def test_the_worker_sandbox_is_recycled(workers, executor):
    (worker,) = workers(1, **{"recycle-after": 4})
    assert worker.proc is not None
    servers = []
    for round_ in range(3):
        jobs = [executor.submit(echo(round_ * 10 + i)) for i in range(4)]
        assert all(j.result(timeout=60).ok for j in jobs)
        servers.append(children(worker.proc.pid))
    # The slot servers of one sandbox serve 4 jobs, then a new sandbox takes over.
    assert all(servers) and len({frozenset(s) for s in servers}) >= 2


def test_jobs_whose_message_the_broker_lost_are_sent_again(broker, workers):
    # kombu pops a message, then records it as taken: a worker killed in between
    # loses it. Here the queue is emptied by hand, as such a loss would leave it.
    import redis

    dispatcher = CeleryDispatcher(broker=broker, visibility_timeout=10, sweep_interval=0.5)
    with codeexec.Executor(dispatcher=dispatcher) as ex:
        jobs = [ex.submit(echo(i)) for i in range(3)]
        queue = "codeexec.process.lang.bash"
        deadline = time.monotonic() + 10
        while not ex.metrics()[queue].backlog:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert redis.Redis.from_url(broker).delete(queue) == 1
        workers(1)
        assert [j.result(timeout=60).tests[0].stdout for j in jobs] == ["0\n", "7\n", "14\n"]


def test_results_judged_by_workers_are_stored_by_the_host(broker, workers, tmp_path):
    workers(1)
    dispatcher = CeleryDispatcher(broker=broker)
    with codeexec.Executor(dispatcher=dispatcher, store=str(tmp_path)) as ex:
        jobs = [ex.submit(echo(i, user_id="stored")) for i in range(3)]
        results = [j.result(timeout=60) for j in jobs]
        ids = [r.metadata["submission_id"] for r in results]
        assert ex.store.flush(10)
        records = ex.store.query(user_id="stored").records
        assert sorted(r.id for r in records) == sorted(ids)
        assert {r.backend for r in records} == {"process"}
        assert ex.store.get(ids[2]).result.tests[0].stdout == "14\n"


def test_the_worker_passes_celerys_own_options_on(broker, workers, executor):
    (worker,) = workers(1, celery_args=["-E", "--max-memory-per-child", "2000000"])
    assert executor.submit(echo(3)).result(timeout=60).ok
    assert "task events: ON" in worker.output()
    proc = subprocess.run(
        [sys.executable, "-m", "codeexec", "worker", "--broker", broker, "--no-such-option"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "no-such-option" in proc.stderr + proc.stdout


def test_contest_problems_travel_to_the_workers(broker, workers):
    # Groups, a checker program, a generator and an interactor go in the message as
    # data; the worker builds and runs them (two slots: an interactive test takes both).
    workers(1, slots=2)
    dispatcher = CeleryDispatcher(broker=broker, visibility_timeout=300)
    with codeexec.Executor(dispatcher=dispatcher) as executor:
        _judge_contest_problems(executor)
    # What may take longer than the broker waits for a worker is refused at once:
    # the checker's, the interactor's and the generators' time counts too.
    short = CeleryDispatcher(broker=broker, visibility_timeout=60)
    with codeexec.Executor(dispatcher=short) as executor:
        many = codeexec.Submission(
            language="bash",
            code="cat",
            tests=[codeexec.TestCase(stdin=str(i)) for i in range(5)],
            limits={"wall_time": 5},
            checker=codeexec.CheckerProgram(
                language="bash", code="exit 0", limits={"wall_time": 10}
            ),
        )
        with pytest.raises(codeexec.DispatchError, match="visibility timeout"):
            executor.submit(many)


def _judge_contest_problems(executor):
    checker = codeexec.CheckerProgram(
        language="python",
        code="import sys\nsys.exit(0 if open(sys.argv[2]).read().split() == ['6'] else 1)",
    )
    generator = codeexec.Generator(
        name="gen", language="python", code="import sys\nprint(*sys.argv[1:])"
    )
    contest = codeexec.Submission(
        language="python",
        code="print(sum(map(int, input().split())))",
        groups=[
            codeexec.TestGroup(
                name="a", points=10, tests=[codeexec.TestCase(generate=("gen", "1", "2", "3"))]
            ),
            codeexec.TestGroup(
                name="b", points=5, depends_on=["a"], tests=[codeexec.TestCase(stdin="2 4")]
            ),
        ],
        checker=checker,
        generators=[generator],
    )
    result = executor.submit(contest).result(timeout=120)
    assert [t.verdict for t in result.tests] == [Verdict.ACCEPTED, Verdict.ACCEPTED]
    assert (result.score, result.max_score) == (15, 15)
    assert [g.name for g in result.groups] == ["a", "b"]
    interactive = codeexec.Submission(
        language="python",
        code="print(int(input()) * 2, flush=True)",
        tests=[codeexec.TestCase(stdin="21")],
        interactor=codeexec.Interactor(
            language="python",
            code=(
                "import sys\nn = open(sys.argv[1]).read().strip()\nprint(n, flush=True)\n"
                "sys.exit(0 if input().strip() == str(2 * int(n)) else 1)"
            ),
        ),
    )
    result = executor.submit(interactive).result(timeout=120)
    assert result.verdict is Verdict.ACCEPTED, result.tests
