"""Judging one submission: compile once, run every test in the sandbox, check outputs.

Verdicts are decided here, from what the sandbox *measured*, the same way for every
backend (a cgroup OOM kill is MLE, CPU over the limit is TLE, ...); never guessed from
an exit code alone.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import logging
import os
import re
import signal as _signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import attrs
from cachetools import LRUCache

from ._checkers import CallableChecker, Checker, describe
from ._errors import ConfigurationError, JobCancelled, SubmissionError
from ._languages import Language, LanguageRegistry, Toolchain
from ._model import CompileResult, File, Limits, Result, Submission, TestCase, TestResult, Verdict
from ._programs import CHECKER_FILES, CheckerProgram, Program, ProgramVerdict, testlib_verdict
from ._scoring import Scorer, overall, skipped
from .backends._protocol import RunOutcome, RunRequest, Sandbox, Stdio
from .cache.keys import fingerprint
from .cache.layered import LayeredCache

log = logging.getLogger(__name__)

__all__ = ["ArtifactCache", "Prepared", "Runner", "classify"]


#: What runtimes print as they die of a failed allocation: C++'s std::bad_alloc,
#: Python's MemoryError, Java's OutOfMemoryError, glibc's and Node's messages.
_ALLOCATION_FAILED = re.compile(
    rb"std::bad_alloc|\bMemoryError\b|OutOfMemoryError|Cannot allocate memory"
    rb"|out of memory|allocation failed",
)


def _signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def classify(
    outcome: RunOutcome, limits: Limits, checker: Checker | None, test: TestCase | None
) -> tuple[Verdict, str | None, str]:
    """(verdict, which time limit or None, message) for one run's measurements."""
    if outcome.error is not None:
        return Verdict.INTERNAL_ERROR, None, outcome.error
    if outcome.killed_for == "output":
        return Verdict.OUTPUT_LIMIT_EXCEEDED, None, f"more than {limits.output} bytes of output"
    if outcome.signal == _signal.SIGXFSZ:
        return (
            Verdict.OUTPUT_LIMIT_EXCEEDED,
            None,
            f"wrote a file larger than {limits.file_size} bytes",
        )
    if outcome.oom_killed:
        return Verdict.MEMORY_LIMIT_EXCEEDED, None, "killed by the OOM killer at the memory limit"
    if outcome.memory_peak > limits.memory:
        return (
            Verdict.MEMORY_LIMIT_EXCEEDED,
            None,
            f"used {outcome.memory_peak} bytes of memory (limit {limits.memory})",
        )
    if outcome.stalled_at_memory_limit:
        # Thrashing: the kernel kept reclaiming the program's own pages at the limit
        # (its code, when the rest is tmpfs or locked) and it never got to run out.
        return (
            Verdict.MEMORY_LIMIT_EXCEEDED,
            None,
            f"stalled at the memory limit until killed for {outcome.killed_for} time",
        )
    if (
        outcome.killed_for == "cpu"
        or outcome.cpu_time > limits.cpu_time
        or outcome.signal == _signal.SIGXCPU
    ):
        return (
            Verdict.TIME_LIMIT_EXCEEDED,
            "cpu",
            f"used {outcome.cpu_time:.3f}s of CPU (limit {limits.cpu_time}s)",
        )
    if outcome.killed_for == "wall":
        return (
            Verdict.TIME_LIMIT_EXCEEDED,
            "wall",
            f"ran longer than {limits.effective_wall_time}s of wall time",
        )
    failed = outcome.signal is not None or outcome.exit_code != 0
    if failed and outcome.memory_limit_hit:
        # An allocation failed at the cgroup limit and the program died of it
        # (MemoryError, std::bad_alloc): the limit, not the program, is the cause.
        return Verdict.MEMORY_LIMIT_EXCEEDED, None, "an allocation failed at the memory limit"
    if failed and limits.address_space is not None and _ALLOCATION_FAILED.search(outcome.stderr):
        # Past RLIMIT_AS an allocation fails; the runtime says so as it dies.
        return (
            Verdict.MEMORY_LIMIT_EXCEEDED,
            None,
            f"an allocation failed at the address-space limit ({limits.address_space} bytes)",
        )
    if outcome.signal == _signal.SIGSYS:
        return Verdict.RUNTIME_ERROR, None, "killed by SIGSYS: a forbidden system call (seccomp)"
    if outcome.signal is not None:
        return Verdict.RUNTIME_ERROR, None, f"killed by {_signal_name(outcome.signal)}"
    if outcome.exit_code != 0:
        return Verdict.RUNTIME_ERROR, None, f"exit code {outcome.exit_code}"
    if test is None or test.expected is None or checker is None:
        return Verdict.ACCEPTED, None, ""
    try:
        check = checker.check(outcome.stdout, test.expected, test)
    except Exception as exc:  # the checker's fault, not the program's: say so per test
        log.warning("checker %s raised", checker.identity, exc_info=True)
        return Verdict.INTERNAL_ERROR, None, f"the checker failed: {type(exc).__name__}: {exc}"
    if check.ok:
        return Verdict.ACCEPTED, None, check.message
    return Verdict.WRONG_ANSWER, None, check.message


def _stop_if_cancelled(cancel: threading.Event | None, outcome: RunOutcome | None = None) -> None:
    """Raise :class:`~codeexec.JobCancelled` when the judging was cancelled (a run the
    sandbox killed for it has no verdict)."""
    if (cancel is not None and cancel.is_set()) or (
        outcome is not None and outcome.killed_for == "cancelled"
    ):
        raise JobCancelled("the job was cancelled")


def _measured(outcome: RunOutcome) -> dict[str, Any]:
    """The fields of :class:`~codeexec._model.Measured` from a sandbox's outcome."""
    return {
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "cpu_time": outcome.cpu_time,
        "wall_time": outcome.wall_time,
        "memory_peak": outcome.memory_peak,
        "stdout": outcome.stdout,
        "stderr": outcome.stderr,
    }


class ArtifactCache:
    """Compiled artifacts by source, flags and compiler version (bounded LRU, thread-safe).

    Judging the same source against new tests reuses the binary instead of compiling
    again. A failed compile is cached too: the same source fails the same way. With a
    ``shared`` cache (the executor's), artifacts are found across processes as well.
    """

    def __init__(self, maxsize: int = 256, shared: LayeredCache | None = None) -> None:
        self._cache: LRUCache[str, tuple[CompileResult, tuple[File, ...]]] = LRUCache(maxsize)
        #: Generated test inputs, by generator and arguments (bounded by their size).
        self._inputs: LRUCache[str, bytes] = LRUCache(maxsize=256 << 20, getsizeof=len)
        self._lock = threading.Lock()
        self._inflight: dict[str, threading.Lock] = {}
        self.shared = shared

    @staticmethod
    def key(
        language: Language, toolchain: Toolchain, files: tuple[File, ...], limits: Limits
    ) -> str:
        h = hashlib.sha256()
        for part in (
            language.name,
            toolchain.version,
            json.dumps(language.definition(), sort_keys=True),
            json.dumps(limits.to_dict(applied=True), sort_keys=True),
        ):
            h.update(part.encode())
            h.update(b"\0")
        for f in sorted(files, key=lambda f: f.path):
            h.update(f.path.encode() + b"\0" + hashlib.sha256(f.content).digest())
            h.update(b"x" if f.executable else b"-")
        return h.hexdigest()

    def get(self, key: str) -> tuple[CompileResult, tuple[File, ...]] | None:
        with self._lock:
            found = self._cache.get(key)
        if found is None and self.shared is not None:
            raw = self.shared.get("artifact:" + key)
            if isinstance(raw, bytes):
                try:
                    data = json.loads(raw)
                    found = (
                        CompileResult.from_dict(data["compile"]),
                        tuple(File.from_dict(f) for f in data["files"]),
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("unreadable cached artifact %s: %s", key[:12], exc)
                    return None
                with self._lock:
                    self._cache[key] = found
        return found

    def put(self, key: str, value: tuple[CompileResult, tuple[File, ...]]) -> None:
        with self._lock:
            self._cache[key] = value
        if self.shared is not None:
            data = {"compile": value[0].to_dict(), "files": [f.to_dict() for f in value[1]]}
            self.shared.set("artifact:" + key, json.dumps(data).encode())

    def get_input(self, key: str) -> bytes | None:
        """A generated test input kept under ``key`` (here, or in the shared cache)."""
        with self._lock:
            found = self._inputs.get(key)
        if found is None and self.shared is not None:
            raw = self.shared.get(key)
            if isinstance(raw, bytes):
                found = raw
                with self._lock:
                    self._inputs[key] = raw
        return found

    def put_input(self, key: str, data: bytes) -> None:
        with self._lock:
            self._inputs[key] = data
        if self.shared is not None:
            self.shared.set(key, data)

    def lock_for(self, key: str) -> threading.Lock:
        """One compile per key at a time: identical concurrent compiles wait for the first."""
        with self._lock:
            return self._inflight.setdefault(key, threading.Lock())

    def release(self, key: str) -> None:
        with self._lock:
            self._inflight.pop(key, None)


@attrs.frozen
class Prepared:
    """A validated submission with its language, toolchain and fingerprint resolved."""

    submission: Submission
    language: Language
    toolchain: Toolchain
    fingerprint: str
    #: Whether the result may come from or go to the result cache (False when the
    #: checker's behaviour cannot be keyed; see :class:`~codeexec.CallableChecker`).
    cacheable: bool = True
    #: The program's main name (``{main}`` in the language's commands): ``Main``, or
    #: e.g. a Java submission's public class.
    main: str = "Main"
    #: The checker's identity, worked out once (it is in the fingerprint).
    checker_identity: str = ""

    @property
    def source(self) -> str:
        """The main file's name in the work directory."""
        return self.language.source_name(self.main)

    def limits_for(self, test: TestCase) -> Limits:
        """The limits the program runs with on ``test``: the submission's, the test's
        overrides, the language's time multiplier."""
        return self.language.run_limits(test.applied(self.submission.limits))

    def checker_unchanged(self) -> bool:
        """Whether the checker's identity is still the one in the fingerprint (a
        callable's reads data that may change between prepare and judging)."""
        checker = self.submission.checker
        if not isinstance(checker, CallableChecker):
            return True
        return checker.describe()[0] == self.checker_identity


class _RunsAhead:
    """One unit's tests, started up to ``ahead`` at a time on a pool's threads and
    taken back in order."""

    def __init__(
        self,
        run: Callable[[TestCase], _Ran],
        tests: Iterable[TestCase],
        ahead: int,
        pool: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self._run = run
        self._upcoming = iter(tests)
        self._ahead = ahead
        self._pool = pool
        self._started: deque[concurrent.futures.Future[_Ran]] = deque()

    def next(self) -> _Ran:
        """The next test's run (starting the ones after it)."""
        while len(self._started) < self._ahead:
            test = next(self._upcoming, None)
            if test is None:
                break
            self._started.append(self._pool.submit(self._run, test))
        return self._started.popleft().result()

    def drop(self) -> None:
        """Forget the runs started and not taken (those not begun never begin)."""
        while self._started:
            self._started.popleft().cancel()


class _Either(threading.Event):
    """Set when either of two events is: all a sandbox asks of ``RunRequest.cancel``
    is ``is_set()``."""

    def __init__(self, first: threading.Event | None, second: threading.Event) -> None:
        super().__init__()
        self._events = (first, second)

    def is_set(self) -> bool:
        return any(event is not None and event.is_set() for event in self._events)


@attrs.frozen
class _Built:
    """A problem's program ready to run: prepared, and the files its runs get."""

    prepared: Prepared
    files: tuple[File, ...]

    def request(
        self,
        args: list[str],
        more_files: tuple[File, ...] = (),
        *,
        limits: Limits | None = None,
        **kw: Any,
    ) -> RunRequest:
        """A run of it with these arguments and files besides its own (its own
        limits unless others are given)."""
        built = self.prepared
        language, toolchain = built.language, built.toolchain
        limits = built.submission.limits if limits is None else limits
        return RunRequest(
            argv=language.render(language.run, toolchain, limits, built.main) + args,
            files=self.files + more_files,
            env=language.run_env(),
            limits=limits,
            toolchain=toolchain.directories(),
            language=language.name,
            **kw,
        )


class _Ran(NamedTuple):
    """A test's run: what the sandbox measured, and what the problem's checker
    program or interactor said of it (None: the submission's checker judges)."""

    outcome: RunOutcome
    said: _Said | None


@attrs.frozen
class _Helpers:
    """The problem's programs that judge with the submission, built."""

    checker: _Built | None = None
    interactor: _Built | None = None


@attrs.frozen
class _Said:
    """A test's verdict, the share of its points it earned, why, and the log of the
    program that judged it."""

    verdict: Verdict
    share: float
    message: str
    log: str = ""
    #: "cpu" or "wall" when the verdict is a time limit.
    time_limit: str | None = None


#: The program's own limits: its verdict stands whatever the interactor said.
_PROGRAM_LIMITS = (
    Verdict.TIME_LIMIT_EXCEEDED,
    Verdict.MEMORY_LIMIT_EXCEEDED,
    Verdict.OUTPUT_LIMIT_EXCEEDED,
    Verdict.INTERNAL_ERROR,
)


def _log(outcome: RunOutcome) -> str:
    return outcome.stderr.decode("utf-8", "replace")


def _program_said(outcome: RunOutcome, limits: Limits, test: TestCase, what: str) -> ProgramVerdict:
    """What a checker program or an interactor said with its end (testlib's codes)."""
    verdict, _, failure = classify(outcome, limits, None, None)
    # It says what it thinks with its exit code: only a limit, a signal or a sandbox
    # failure is its own failure.
    ended = verdict is Verdict.ACCEPTED or (
        verdict is Verdict.RUNTIME_ERROR and outcome.exit_code is not None
    )
    return testlib_verdict(outcome, None if ended else failure, test.worth, what)


class Runner:
    """Runs prepared submissions on one sandbox."""

    def __init__(
        self,
        sandbox: Sandbox,
        languages: LanguageRegistry,
        artifacts: ArtifactCache | None = None,
        *,
        shared_artifacts: LayeredCache | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.languages = languages
        self.artifacts = artifacts or ArtifactCache(shared=shared_artifacts)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def prepare(self, submission: Submission) -> Prepared:
        """Resolve the language and toolchain; raises before anything runs."""
        language = self.languages.get(submission.language)
        toolchain = self.languages.toolchain(language.name)
        main = language.main_name(submission.code)
        source = language.source_name(main)
        if submission.code is not None and any(f.path == source for f in submission.files):
            raise SubmissionError(f"both code and a file named {source!r} were given; pass one")
        checker_identity, cacheable = describe(submission.checker)
        if isinstance(submission.checker, CheckerProgram):
            checker_identity = self._program_identity(submission.checker)
        interactor_identity = None
        if submission.interactor is not None:
            interactor_identity = self._program_identity(submission.interactor)
            if not hasattr(self.sandbox, "run_together") or self.sandbox.concurrency < 2:
                raise ConfigurationError(
                    f"the {self.sandbox.name} sandbox cannot judge interactive problems:"
                    " they need run_together and at least 2 slots"
                )
        generator_identities = {g.name: self._program_identity(g) for g in submission.generators}
        key = fingerprint(
            submission,
            language=language,
            toolchain_version=toolchain.version,
            sandbox=f"{self.sandbox.name}:{self.sandbox.version}",
            checker_identity=checker_identity,
            interactor_identity=interactor_identity,
            generator_identities=generator_identities,
        )
        return Prepared(submission, language, toolchain, key, cacheable, main, checker_identity)

    def _program_identity(self, program: Program) -> str:
        """A problem's program's identity with its build: language and toolchain."""
        language = self.languages.get(program.language)
        definition = json.dumps(language.definition(), sort_keys=True)
        build = self.languages.toolchain(language.name).version + definition
        return program.identity + ":" + hashlib.sha256(build.encode()).hexdigest()[:16]

    def _files(self, prepared: Prepared) -> tuple[File, ...]:
        sub = prepared.submission
        files = list(sub.files)
        if sub.code is not None:
            files.insert(0, File(prepared.source, sub.code))
        return tuple(files)

    def compile(
        self, prepared: Prepared, cancel: threading.Event | None = None
    ) -> tuple[CompileResult, tuple[File, ...]]:
        """Compile (or reuse an identical earlier compile); returns the result and the
        files every test run gets."""
        language, toolchain, sub = prepared.language, prepared.toolchain, prepared.submission
        files = self._files(prepared)
        assert language.compile is not None
        key = ArtifactCache.key(language, toolchain, files, sub.compile_limits)
        cached = self.artifacts.get(key)
        if cached is not None:
            return attrs.evolve(cached[0], cached=True), cached[1]
        lock = self.artifacts.lock_for(key)
        try:
            with lock:
                return self._compile_locked(prepared, key, files, cancel)
        finally:
            self.artifacts.release(key)

    def _compile_locked(
        self,
        prepared: Prepared,
        key: str,
        files: tuple[File, ...],
        cancel: threading.Event | None,
    ) -> tuple[CompileResult, tuple[File, ...]]:
        language, toolchain, sub = prepared.language, prepared.toolchain, prepared.submission
        assert language.compile is not None
        cached = self.artifacts.get(key)
        if cached is not None:
            return attrs.evolve(cached[0], cached=True), cached[1]
        outcome = self.sandbox.run(
            RunRequest(
                argv=language.render(
                    language.compile, toolchain, sub.compile_limits, prepared.main
                ),
                files=files,
                env=language.run_env(),
                limits=sub.compile_limits,
                collect=language.artifacts,
                toolchain=toolchain.directories(),
                language=language.name,
                cancel=cancel,
            )
        )
        _stop_if_cancelled(cancel, outcome)
        result, run_files = self._compile_result(outcome, prepared, files)
        if result.message != "sandbox failure":
            self.artifacts.put(key, (result, run_files))
        return result, run_files

    def _compile_result(
        self, outcome: RunOutcome, prepared: Prepared, files: tuple[File, ...]
    ) -> tuple[CompileResult, tuple[File, ...]]:
        sub, language = prepared.submission, prepared.language
        verdict, _, message = classify(outcome, sub.compile_limits, None, None)
        ok = verdict is Verdict.ACCEPTED and bool(outcome.collected)
        if verdict is Verdict.ACCEPTED and not outcome.collected:
            message = f"the compiler produced none of {', '.join(language.artifacts)}"
        elif verdict is Verdict.INTERNAL_ERROR:
            message = "sandbox failure"
        elif verdict is Verdict.RUNTIME_ERROR:
            message = f"the compiler failed ({message})"
        elif verdict is not Verdict.ACCEPTED:
            message = f"compiler: {verdict.value.replace('_', ' ')} ({message})"
        measured = _measured(outcome)
        if verdict is Verdict.INTERNAL_ERROR:
            measured["stderr"] = outcome.error or ""
        result = CompileResult(ok=ok, message=message, **measured)
        # Tests get the artifacts plus the submission's other files (data files), but
        # not the sources the artifacts were built from.
        artifacts = tuple(
            File(path, content, executable=True)
            for path, content in sorted(outcome.collected.items())
        )
        others = tuple(
            f for f in files if f.path != prepared.source and f.path not in outcome.collected
        )
        return result, artifacts + others

    def _program_request(
        self, prepared: Prepared, files: tuple[File, ...], test: TestCase, **kw: Any
    ) -> RunRequest:
        """The request that runs the submission on one test."""
        language, toolchain = prepared.language, prepared.toolchain
        limits = prepared.limits_for(test)
        argv = language.render(language.run, toolchain, limits, prepared.main)
        return RunRequest(
            argv=argv + list(test.args),
            files=files,
            env=language.run_env(),
            limits=limits,
            toolchain=toolchain.directories(),
            language=language.name,
            **kw,
        )

    def run_test(
        self,
        prepared: Prepared,
        files: tuple[File, ...],
        test: TestCase,
        cancel: threading.Event | None = None,
        *,
        helpers: _Helpers | None = None,
        group: str | None = None,
    ) -> tuple[TestResult, float]:
        """Run one test; its result and the share of its points it earned (0 to 1).
        ``helpers``: the problem's checker program and interactor, built."""
        inputs = self._generate(prepared, cancel)
        ran = self._run_test(prepared, files, test, cancel, helpers or _Helpers(), inputs)
        return self._judged(prepared, test, ran, group)

    def _run_test(
        self,
        prepared: Prepared,
        files: tuple[File, ...],
        test: TestCase,
        cancel: threading.Event | None,
        helpers: _Helpers,
        inputs: Mapping[tuple[str, ...], bytes | str] | None = None,
    ) -> _Ran:
        """The sandboxed part of a test (any thread): the program's run, and what the
        problem's programs said of it. An in-process checker judges later, in
        :meth:`_judged`, on the judging thread and in test order. ``inputs``: the
        generated stdin of tests that have a generator (or why it failed)."""
        if test.generate is not None:
            generated = (inputs or {}).get(test.generate, "the generator did not run")
            if isinstance(generated, str):
                return _Ran(RunOutcome(error=generated), None)
            test = attrs.evolve(test, stdin=generated, generate=None)
        if helpers.interactor is not None:
            return self._run_interactive(prepared, files, test, cancel, helpers)
        request = self._program_request(prepared, files, test, stdin=test.stdin, cancel=cancel)
        outcome = self.sandbox.run(request)
        _stop_if_cancelled(cancel, outcome)
        if helpers.checker is None:
            return _Ran(outcome, None)
        verdict, time_limit, message = classify(outcome, prepared.limits_for(test), None, test)
        if verdict is not Verdict.ACCEPTED:
            return _Ran(outcome, _Said(verdict, 0.0, message, time_limit=time_limit))
        return _Ran(outcome, self._run_checker(helpers.checker, test, outcome.stdout, cancel))

    def _judged(
        self, prepared: Prepared, test: TestCase, ran: _Ran, group: str | None
    ) -> tuple[TestResult, float]:
        """A test's result from its run (the in-process checker judges here)."""
        outcome, said = ran
        if said is None:
            limits = prepared.limits_for(test)
            verdict, time_limit, message = classify(
                outcome, limits, prepared.submission.checker, test
            )
            share = 1.0 if verdict is Verdict.ACCEPTED else 0.0
            said = _Said(verdict, share, message, time_limit=time_limit)
        result = TestResult(
            name=test.name,
            verdict=said.verdict,
            **_measured(outcome),
            stdout_truncated=outcome.stdout_truncated,
            stderr_truncated=outcome.stderr_truncated,
            time_limit=said.time_limit,
            message=said.message,
            points=said.share * test.worth,
            group=group,
            judge_log=said.log,
        )
        return result, said.share

    def _run_interactive(
        self,
        prepared: Prepared,
        files: tuple[File, ...],
        test: TestCase,
        cancel: threading.Event | None,
        helpers: _Helpers,
    ) -> _Ran:
        """The program and the interactor at the same time, each in a slot of its
        own, each one's stdout the other's stdin; the verdict from both ends."""
        interactor = helpers.interactor
        assert interactor is not None
        built = interactor.prepared
        # The program runs out of (wall) time before its interactor does: a program
        # that stops talking is its own fault, not the problem's.
        own = prepared.limits_for(test)
        wall = max(built.submission.limits.effective_wall_time, own.effective_wall_time + 1)
        limits = attrs.evolve(built.submission.limits, wall_time=wall)
        data = (File("input.txt", test.stdin), File("answer.txt", test.expected or b""))
        to_program = os.pipe2(os.O_CLOEXEC)
        try:
            from_program = os.pipe2(os.O_CLOEXEC)
        except OSError:
            for fd in to_program:
                os.close(fd)
            raise
        program_stdio = Stdio(to_program[0], from_program[1])
        interactor_stdio = Stdio(from_program[0], to_program[1])
        try:
            requests = [
                self._program_request(prepared, files, test, cancel=cancel, stdio=program_stdio),
                interactor.request(
                    list(CHECKER_FILES),
                    data,
                    limits=limits,
                    collect=("output.txt",) if helpers.checker is not None else (),
                    cancel=cancel,
                    stdio=interactor_stdio,
                ),
            ]
            run_together = self.sandbox.run_together  # type: ignore[attr-defined]
            outcome, ended = run_together(requests)
        finally:
            program_stdio.close()
            interactor_stdio.close()
        _stop_if_cancelled(cancel, outcome)
        _stop_if_cancelled(cancel, ended)
        verdict, time_limit, message = classify(outcome, own, None, None)
        if outcome.error is not None or verdict in _PROGRAM_LIMITS:
            # Its own limit (an idle program: wall time): whatever the interactor
            # made of the silence follows from it.
            said = _Said(verdict, 0.0, message, time_limit=time_limit)
        else:
            said = self._interactor_said(ended, limits, test)
            if said.verdict is Verdict.ACCEPTED and verdict is not Verdict.ACCEPTED:
                said = _Said(verdict, 0.0, message, said.log)
            elif said.verdict is Verdict.ACCEPTED and helpers.checker is not None:
                written = ended.collected.get("output.txt", b"")
                said = self._run_checker(helpers.checker, test, written, cancel)
        return _Ran(outcome, said)

    @staticmethod
    def _interactor_said(ended: RunOutcome, limits: Limits, test: TestCase) -> _Said:
        """What the interactor's end says of the test."""
        log_ = _log(ended)
        if ended.signal == _signal.SIGPIPE:
            # It wrote to a program that had ended: the program left the protocol.
            return _Said(
                Verdict.WRONG_ANSWER, 0.0, "the program ended before the interaction did", log_
            )
        said = _program_said(ended, limits, test, "interactor")
        return _Said(said.verdict, said.share, said.message, log_)

    def _generate(
        self, prepared: Prepared, cancel: threading.Event | None
    ) -> dict[tuple[str, ...], bytes | str]:
        """The stdin of every test that has a generator, by its ``generate``: each
        distinct one generated once, or found in the cache; a str says why it failed."""
        sub = prepared.submission
        wanted = sorted({t.generate for t in sub.effective_tests if t.generate is not None})
        generators = {g.name: g for g in sub.generators}
        built: dict[str, _Built | str] = {}
        inputs: dict[tuple[str, ...], bytes | str] = {}
        for spec in wanted:
            generator = generators[spec[0]]
            key = (
                "input:"
                + hashlib.sha256(
                    json.dumps([self._program_identity(generator), list(spec)]).encode()
                ).hexdigest()
            )
            found = self.artifacts.get_input(key)
            if found is not None:
                inputs[spec] = found
                continue
            if generator.name not in built:
                built[generator.name] = self._build(generator, cancel)
            program = built[generator.name]
            generated = (
                program if isinstance(program, str) else self._run_generator(program, spec, cancel)
            )
            if isinstance(generated, bytes):
                self.artifacts.put_input(key, generated)
            inputs[spec] = generated
        return inputs

    def _run_generator(
        self, program: _Built, spec: tuple[str, ...], cancel: threading.Event | None
    ) -> bytes | str:
        """One generator run: its stdout, or why it failed."""
        limits = program.prepared.submission.limits
        outcome = self.sandbox.run(program.request(list(spec[1:]), cancel=cancel))
        _stop_if_cancelled(cancel, outcome)
        verdict, _, message = classify(outcome, limits, None, None)
        if verdict is not Verdict.ACCEPTED:
            stderr = outcome.stderr[:1024].decode("utf-8", "replace").strip()
            return f"the generator {' '.join(spec)!r} failed: {message}" + (
                f": {stderr}" if stderr else ""
            )
        return outcome.stdout

    def _build(self, program: Program, cancel: threading.Event | None) -> _Built | str:
        """A problem's program compiled (or its compile reused), or why it cannot be."""
        built = self.prepare(program.program)
        if not built.language.compiled:
            return _Built(built, self._files(built))
        compiled, files = self.compile(built, cancel)
        if not compiled.ok:
            detail = (compiled.message + "\n" + compiled.stderr).strip()
            return f"the {program.kind} did not compile: {detail[:2000]}"
        return _Built(built, files)

    def _build_helpers(
        self, submission: Submission, cancel: threading.Event | None
    ) -> _Helpers | str:
        """The submission's checker program and interactor, built; or why not."""
        helpers = _Helpers()
        for field, program in (
            ("checker", submission.checker),
            ("interactor", submission.interactor),
        ):
            if isinstance(program, Program):
                built = self._build(program, cancel)
                if isinstance(built, str):
                    return built
                helpers = attrs.evolve(helpers, **{field: built})
        return helpers

    def _run_checker(
        self,
        checker: _Built,
        test: TestCase,
        output: bytes,
        cancel: threading.Event | None,
    ) -> _Said:
        limits = checker.prepared.submission.limits
        data = (test.stdin, output, test.expected or b"")
        files = tuple(map(File, CHECKER_FILES, data))
        outcome = self.sandbox.run(checker.request(list(CHECKER_FILES), files, cancel=cancel))
        _stop_if_cancelled(cancel, outcome)
        said = _program_said(outcome, limits, test, "checker")
        return _Said(said.verdict, said.share, said.message, _log(outcome))

    def judge(
        self,
        prepared: Prepared,
        *,
        queue_time: float = 0.0,
        cancel: threading.Event | None = None,
    ) -> Result:
        """Compile once, run the tests (skipping what groups and ``stop_on_failure``
        say to skip), and assemble the :class:`Result`.

        When ``cancel`` is set, the run in progress is killed and no other starts:
        :class:`~codeexec.JobCancelled` is raised."""
        started = time.monotonic()
        sub, language = prepared.submission, prepared.language
        compile_result: CompileResult | None = None
        scorer = Scorer(sub)
        _stop_if_cancelled(cancel)
        if language.compiled:
            compile_result, files = self.compile(prepared, cancel)
            if not compile_result.ok:
                verdict = (
                    Verdict.INTERNAL_ERROR
                    if compile_result.message == "sandbox failure"
                    else Verdict.COMPILATION_ERROR
                )
                return self._result(
                    prepared, verdict, (), compile_result, started, queue_time, scorer
                )
        else:
            files = self._files(prepared)
        helpers = self._build_helpers(sub, cancel)
        if isinstance(helpers, str):  # the problem's fault: every test says so
            failed = tuple(
                TestResult(
                    name=t.name, verdict=Verdict.INTERNAL_ERROR, message=helpers, group=u.name
                )
                for u in scorer.units
                for t in u.tests
            )
            return self._result(
                prepared,
                Verdict.INTERNAL_ERROR,
                failed,
                compile_result,
                started,
                queue_time,
                scorer,
            )
        # Tests run ahead on the sandbox's other slots; their results are taken in
        # order, so what a failure skips is the same as when they ran one by one.
        ahead = 1 if helpers.interactor is not None else max(1, self.sandbox.concurrency)
        inputs = self._generate(prepared, cancel)
        tests: list[TestResult] = []
        for unit in scorer.units:
            blocked = skip = scorer.blocked(unit)
            results: list[TestResult] = []
            dropped = threading.Event()  # kills the runs whose results are not wanted
            runs = _RunsAhead(
                functools.partial(
                    self._run_test,
                    prepared,
                    files,
                    cancel=_Either(cancel, dropped),
                    helpers=helpers,
                    inputs=inputs,
                ),
                () if blocked else unit.tests,
                ahead,
                self._tests_pool(),
            )
            try:
                for test in unit.tests:
                    if skip:
                        results.append(skipped(test, unit.name, skip))
                        continue
                    _stop_if_cancelled(cancel)
                    result, share = self._judged(prepared, test, runs.next(), unit.name)
                    results.append(result)
                    skip = scorer.after(unit, result, share)
            finally:
                # Runs started ahead of a failure are killed, not waited for; their
                # results are dropped.
                dropped.set()
                runs.drop()
            scorer.finish(unit, results, blocked)
            tests += results
        return self._result(
            prepared, overall(tests), tuple(tests), compile_result, started, queue_time, scorer
        )

    def _tests_pool(self) -> concurrent.futures.ThreadPoolExecutor:
        """Threads that run tests, one per sandbox slot, shared by every judging."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=max(1, self.sandbox.concurrency),
                    thread_name_prefix="codeexec-test",
                )
            return self._pool

    def close(self) -> None:
        """Stop the test threads (after the runs they have started)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _result(
        self,
        prepared: Prepared,
        verdict: Verdict,
        tests: tuple[TestResult, ...],
        compile_result: CompileResult | None,
        started: float,
        queue_time: float,
        scorer: Scorer,
    ) -> Result:
        sub = prepared.submission
        score, max_score = scorer.score(list(tests))
        return Result(
            verdict=verdict,
            tests=tests,
            compile=compile_result,
            fingerprint=prepared.fingerprint,
            backend=self.sandbox.name,
            queue_time=queue_time,
            total_time=time.monotonic() - started,
            reproducibility=self.reproducibility(prepared),
            metadata=dict(sub.metadata),
            score=score,
            max_score=max_score,
            groups=scorer.groups,
        )

    def reproducibility(self, prepared: Prepared) -> Mapping[str, object]:
        sub = prepared.submission
        return {
            "language": prepared.language.name,
            "toolchain": {
                "version": prepared.toolchain.version,
                "tools": dict(prepared.toolchain.tools),
            },
            "compile_command": list(prepared.language.compile or ()),
            "run_command": list(prepared.language.run),
            "backend": {"name": self.sandbox.name, "version": self.sandbox.version},
            "limits": prepared.language.run_limits(sub.limits).to_dict(applied=True),
            "compile_limits": sub.compile_limits.to_dict(applied=True)
            if prepared.language.compiled
            else None,
            "checker": prepared.checker_identity or sub.checker.identity,
        }
