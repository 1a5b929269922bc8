"""The executor with a result cache: never the same run twice, across threads,
processes and tiers."""

import json
import subprocess
import sys
import threading
import time

import pytest

import codeexec
from codeexec import Executor, Language, LanguageRegistry, Submission, TestCase, Verdict
from codeexec.cache import LayeredCache, MemoryCache, from_url


def without_cached(result):
    data = result.to_dict()
    data.pop("cached")
    return data


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def cache_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.db"
    server = request.getfixturevalue(f"{request.param}_server")
    return server.url


def test_a_result_from_any_tier_equals_the_executed_one(process_sandbox, cache_url):
    sub = Submission(
        language="python",
        code=f"print(input()[::-1])  # {cache_url}",
        tests=[TestCase("abc", "cba", name="t1"), TestCase("xy", "yx")],
    )
    tier = from_url(cache_url)
    with Executor(process_sandbox, cache=tier) as ex:
        first = ex.run(sub)
        second = ex.run(sub)
    with Executor(process_sandbox, cache=tier) as fresh:  # nothing in its own memory
        third = fresh.run(sub)
    tier.close()
    assert not first.cached and second.cached and third.cached
    assert without_cached(second) == without_cached(first)
    assert without_cached(third) == without_cached(first)
    assert ex.stats["executed"] == 1 and fresh.stats["executed"] == 0


def test_two_hundred_identical_submissions_execute_once(process_sandbox):
    sub = Submission(language="python", code="import time; time.sleep(0.3); print('once')")
    with Executor(process_sandbox, cache="memory://", max_workers=8) as ex:
        results: list = [None] * 200
        barrier = threading.Barrier(200)

        def worker(i):
            barrier.wait()
            results[i] = ex.run(sub)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert ex.stats["executed"] == 1, ex.stats
    assert len({json.dumps(without_cached(r), sort_keys=True) for r in results}) == 1
    assert sum(not r.cached for r in results) == 1


TWO_PROCESSES = """
import json, sys, threading, codeexec
url = sys.argv[1]
sub = codeexec.Submission(language="python", code="import time; time.sleep(0.5); print('x')")
with codeexec.Executor(cache=["memory://", url], max_workers=4) as ex:
    out = []
    threads = [threading.Thread(target=lambda: out.append(ex.run(sub))) for _ in range(100)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(r.verdict.value == "accepted" and r.tests[0].stdout == "x\\n" for r in out)
    print(json.dumps(ex.stats))
"""


def test_two_processes_sharing_redis_execute_once(redis_server, tmp_path):
    url = redis_server.url
    script = tmp_path / "worker.py"
    script.write_text(TWO_PROCESSES)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    stats = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        stats.append(json.loads(out))
    assert sum(s["executed"] for s in stats) == 1, stats
    assert sum(s["hits"] + s["shared"] + s["executed"] for s in stats) >= 2


def test_internal_errors_are_not_cached(process_sandbox):
    registry = LanguageRegistry(codeexec.default_languages())
    registry.register(
        Language(
            name="ghost",
            source="main.txt",
            run=("./missing",),
            version_command=("bash", "--version"),
        )
    )
    sub = Submission(language="ghost", code="nothing")
    with Executor(process_sandbox, languages=registry, cache="memory://") as ex:
        assert ex.run(sub).verdict is Verdict.INTERNAL_ERROR
        assert ex.run(sub).verdict is Verdict.INTERNAL_ERROR
        assert ex.stats["executed"] == 2


def test_cached_results_carry_the_asking_submissions_metadata(process_sandbox):
    code = "print('meta')"
    with Executor(process_sandbox, cache="memory://") as ex:
        a = ex.run(Submission(language="python", code=code, metadata={"user_id": "a"}))
        b = ex.run(Submission(language="python", code=code, metadata={"user_id": "b"}))
    assert b.cached and b.metadata == {"user_id": "b"} and a.metadata == {"user_id": "a"}


def test_invalidating_a_problem_forces_a_new_execution(process_sandbox):
    sub = Submission(language="python", code="print('p')", metadata={"problem_id": "p9"})
    cache = LayeredCache([MemoryCache()])
    with Executor(process_sandbox, cache=cache) as ex:
        ex.run(sub)
        assert ex.run(sub).cached
        cache.invalidate("p9")
        assert not ex.run(sub).cached
        assert ex.run(sub).cached
        assert ex.stats["executed"] == 2


def test_compiled_artifact_is_shared_through_the_cache(process_sandbox, tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    code = '#include <stdio.h>\nint main(void){int x; scanf("%d",&x); printf("%d\\n", 2*x);}'
    with Executor(process_sandbox, cache=url) as first:
        one = first.run(Submission(language="c", code=code, tests=[TestCase("2", "4")]))
    with Executor(process_sandbox, cache=url) as second:  # its own, empty artifact LRU
        two = second.run(Submission(language="c", code=code, tests=[TestCase("5", "10")]))
    assert one.verdict is Verdict.ACCEPTED and not one.compile.cached
    assert two.verdict is Verdict.ACCEPTED and two.compile.cached and not two.cached


def test_a_dead_cache_never_fails_an_execution(process_sandbox):
    from services import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    with Executor(process_sandbox, cache=["memory://", dead]) as ex:
        first = ex.run(Submission(language="python", code="print('still works')"))
        second = ex.run(Submission(language="python", code="print('still works')"))
    assert first.verdict is Verdict.ACCEPTED and not first.cached
    assert second.cached  # from L1


def test_bad_cache_spec():
    with pytest.raises(codeexec.CacheError):
        Executor(cache=42)


def test_stale_results_are_served_and_refreshed_in_the_background(process_sandbox):
    cache = LayeredCache([MemoryCache()], result_ttl=0.3, jitter=0, stale_ttl=60)
    sub = Submission(language="python", code="print('stale?')")
    with Executor(process_sandbox, cache=cache) as ex:
        ex.run(sub)
        time.sleep(0.4)
        served = ex.run(sub)
        assert served.cached and served.verdict is Verdict.ACCEPTED
        deadline = time.monotonic() + 10
        while ex.stats["executed"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ex.stats["stale"] == 1 and ex.stats["executed"] == 2
        fresh = cache.get_entry("result:" + served.fingerprint)
        assert fresh is not None and not fresh.stale


def test_a_dead_lock_holder_is_taken_over(process_sandbox, redis_server):
    tier = from_url(redis_server.url, prefix="deadholder:")
    sub = Submission(language="python", code="print('taken over')")
    with Executor(process_sandbox, cache=tier) as ex:
        key = ex._cached.key(ex.prepare(sub))
        # A process that took the lock and died: its lock has no keeper and expires.
        tier.client.set("deadholder:lock:" + key, "someone-else", px=800)
        started = time.monotonic()
        result = ex.run(sub)
        waited = time.monotonic() - started
    tier.close()
    assert result.tests[0].stdout == "taken over\n" and not result.cached
    assert 0.6 < waited < 10


def test_redis_killed_during_a_run():
    from services import RedisServer

    server = RedisServer().start()
    try:
        cache = LayeredCache(
            [MemoryCache(), from_url(server.url, prefix="midrun:", socket_timeout=0.3)],
            cooldown=0.2,
        )
        slow = Submission(language="python", code="import time; time.sleep(1); print('done')")
        with Executor(cache=cache, sandbox_options={"slots": 1}) as ex:
            threading.Timer(0.3, server.kill).start()
            result = ex.run(slow)
            assert result.verdict is Verdict.ACCEPTED and result.tests[0].stdout == "done\n"
            assert ex.run(slow).cached  # kept in L1 while Redis was away
            server.start()
            time.sleep(0.3)
            after = ex.run(Submission(language="python", code="print('redis is back')"))
            assert LayeredCache([cache.tiers[1]]).get("result:" + after.fingerprint)
    finally:
        server.stop()


def _expects(value):
    return lambda out, expected, test: out.strip() == value


def test_checkers_from_one_factory_never_share_a_cached_verdict(process_sandbox):
    """The cache served make("3")'s verdict to make("4"): an autograder's grades were
    corrupted silently."""
    code = "print(3)"
    with Executor(process_sandbox, cache="memory://") as ex:
        first = ex.run(
            Submission(
                language="python", code=code, checker=_expects("3"), tests=[TestCase("", "x")]
            )
        )
        second = ex.run(
            Submission(
                language="python", code=code, checker=_expects("4"), tests=[TestCase("", "x")]
            )
        )
        again = ex.run(
            Submission(
                language="python", code=code, checker=_expects("3"), tests=[TestCase("", "x")]
            )
        )
    assert first.verdict == Verdict.ACCEPTED and not first.cached
    assert second.verdict == Verdict.WRONG_ANSWER and not second.cached
    assert again.verdict == Verdict.ACCEPTED and again.cached


def test_a_checker_whose_behaviour_cannot_be_keyed_is_never_cached(process_sandbox):
    class Expected:
        value = "3"

    expected = Expected()
    sub = Submission(
        language="python",
        code="print(3)",
        tests=[TestCase("", "x")],
        checker=lambda out, exp, test: out.strip() == expected.value,
    )
    with Executor(process_sandbox, cache="memory://") as ex:
        first = ex.run(sub)
        expected.value = "4"  # the same checker object now judges differently
        second = ex.run(sub)
    assert first.verdict == Verdict.ACCEPTED and second.verdict == Verdict.WRONG_ANSWER
    assert not first.cached and not second.cached
    assert ex.stats["executed"] == 0 and ex.stats["hits"] == 0


def test_a_result_with_an_internal_error_test_is_not_cached(process_sandbox):
    """A checker that failed once (after a wrong answer) must not be remembered."""
    calls = []

    def flaky(out, expected, test):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("the answer server timed out")
        return out.strip() == expected.strip()

    flaky_checker = codeexec.CallableChecker(flaky, identity="flaky-v1")
    sub = Submission(
        language="python",
        code="print(input())",
        tests=[TestCase("1", "2"), TestCase("3", "3")],
        checker=flaky_checker,
    )
    with Executor(process_sandbox, cache="memory://") as ex:
        first = ex.run(sub)
        second = ex.run(sub)
    assert [t.verdict for t in first.tests] == [Verdict.WRONG_ANSWER, Verdict.INTERNAL_ERROR]
    assert not second.cached
    assert [t.verdict for t in second.tests] == [Verdict.WRONG_ANSWER, Verdict.ACCEPTED]


ANSWER = ["1"]


def _answer_check(out, expected, test):
    return out.strip() == ANSWER[0]


def test_checker_data_changed_while_a_job_waits_is_not_cached_under_the_old_key(
    process_sandbox,
):
    sub = Submission(
        language="python", code="print(1)", tests=[TestCase("", "x")], checker=_answer_check
    )
    with Executor(process_sandbox, cache="memory://", max_workers=1) as ex:
        blocker = ex.submit(Submission(language="python", code="import time; time.sleep(0.5)"))
        queued = ex.submit(sub)  # keyed now, with ANSWER "1"
        ANSWER[0] = "2"  # the host changes the answer before the job runs
        try:
            assert queued.result(timeout=30).verdict is Verdict.WRONG_ANSWER
            blocker.result(timeout=30)
        finally:
            ANSWER[0] = "1"
        again = ex.run(sub)  # the key of ANSWER "1": must not find the "2" verdict
    assert again.verdict is Verdict.ACCEPTED and not again.cached
