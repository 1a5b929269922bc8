import asyncio
import os
import threading
import time

import pytest

import codeexec
from codeexec import Executor, JobStatus, Submission, TestCase, Verdict


def py(code, **kw):
    return Submission(language="python", code=code, **kw)


def test_run_many_keeps_order_and_reports_progress(executor):
    subs = [py(f"print({i})", tests=[TestCase(expected=str(i))]) for i in range(12)]
    seen = []
    results = executor.run_many(subs, progress=lambda done, total: seen.append((done, total)))
    assert [r.tests[0].stdout for r in results] == [f"{i}\n" for i in range(12)]
    assert all(r.verdict is Verdict.ACCEPTED for r in results)
    assert sorted(seen) == [(i, 12) for i in range(1, 13)]


def test_run_many_is_concurrent(executor):
    subs = [py("import time; time.sleep(0.6)") for _ in range(2)]
    started = time.monotonic()
    executor.run_many(subs)
    assert time.monotonic() - started < 1.1


def test_run_many_validates_everything_before_running(executor):
    marker = []
    subs = [py("print(1)"), Submission(language="nope", code="x")]
    with pytest.raises(codeexec.UnknownLanguageError):
        executor.run_many(subs, progress=lambda *a: marker.append(a))
    assert marker == []


def test_submit_returns_a_job_at_once(executor):
    job = executor.submit(py("import time; time.sleep(0.3); print('done')"))
    assert len(job.id) == 32
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    with pytest.raises(codeexec.JobTimeout):
        job.result(timeout=0.01)
    result = job.result(timeout=10)
    assert result.tests[0].stdout == "done\n"
    assert job.status is JobStatus.DONE and job.done()


def test_job_callback_and_cancel(process_sandbox):
    with Executor(process_sandbox, max_workers=1) as ex:
        called = threading.Event()
        blocker = ex.submit(py("import time; time.sleep(0.5)"))
        queued = ex.submit(py("print(1)"))
        assert queued.status is JobStatus.QUEUED
        assert queued.cancel()
        assert queued.status is JobStatus.CANCELLED
        with pytest.raises(codeexec.JobCancelled):
            queued.result()
        blocker.add_done_callback(lambda job: called.set())
        blocker.result(timeout=10)
        assert called.wait(5)
        assert ex.estimated_time("python") > 0


def test_arun(executor):
    async def main():
        return await asyncio.gather(*(executor.arun(py(f"print({i})")) for i in range(3)))

    results = asyncio.run(main())
    assert [r.tests[0].stdout for r in results] == ["0\n", "1\n", "2\n"]


def test_result_carries_fingerprint_timings_and_metadata(executor):
    result = executor.run(py("print(1)", metadata={"user_id": "u1", "problem_id": "p1"}))
    assert len(result.fingerprint) == 64
    assert result.metadata == {"user_id": "u1", "problem_id": "p1"}
    assert result.total_time > 0 and result.queue_time >= 0
    assert result.backend == "process" and not result.cached


def test_sandbox_by_unknown_name():
    with pytest.raises(codeexec.UnknownSandboxError, match="process"):
        Executor("no-such-sandbox")


def test_not_a_sandbox_is_refused():
    with pytest.raises(TypeError):
        codeexec.get_sandbox(object())


def test_closed_executor_refuses_work(process_sandbox):
    ex = Executor(process_sandbox)
    ex.close()
    with pytest.raises(codeexec.CodeExecError):
        ex.run(py("print(1)"))
    # The sandbox was passed in, so it is not the executor's to close.
    assert process_sandbox.run is not None


def test_cancelling_arun_kills_the_sandboxed_run(executor, tmp_path):
    marker = tmp_path / "after"
    os.chmod(tmp_path, 0o777)
    code = f"import time, pathlib; time.sleep(3); pathlib.Path({str(marker)!r}).touch()"

    async def main():
        task = asyncio.ensure_future(executor.arun(py(code)))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    time.sleep(3.2)
    assert not marker.exists()
    assert executor.run(py("print(1)")).ok


def test_arun_many_keeps_order_and_arun_as_completed_yields_as_they_end(executor):
    subs = [py(f"import time; time.sleep({0.6 if i == 0 else 0}); print({i})") for i in range(4)]

    async def main():
        ordered = await executor.arun_many(subs)
        seen = [index async for index, _ in executor.arun_as_completed(subs)]
        return ordered, seen

    ordered, seen = asyncio.run(main())
    assert [r.tests[0].stdout for r in ordered] == ["0\n", "1\n", "2\n", "3\n"]
    assert sorted(seen) == [0, 1, 2, 3] and seen[-1] == 0


def test_leaving_arun_as_completed_early_stops_the_other_runs(executor, tmp_path):
    os.chmod(tmp_path, 0o777)
    markers = [tmp_path / f"m{i}" for i in range(2)]
    subs = [py("print('fast')")] + [
        py(f"import time, pathlib; time.sleep(2); pathlib.Path({str(m)!r}).touch()")
        for m in markers
    ]

    async def main():
        async for index, result in executor.arun_as_completed(subs):
            return index, result

    index, result = asyncio.run(main())
    assert index == 0 and result.tests[0].stdout == "fast\n"
    time.sleep(2.3)
    assert not any(m.exists() for m in markers)
