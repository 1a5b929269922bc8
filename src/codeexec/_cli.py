"""The ``codeexec`` command: the one place that talks to a terminal.

    codeexec --version
    codeexec run FILE [--language L] [--backend B]
                      [--stdin TEXT | --tests FILE.json | --problem FILE.toml]
                      [--cpu-time S] [--wall-time S] [--memory SIZE] [--output SIZE] [--json]
                      [STORE] [--user U] [--problem-id P] [--id ID]
    codeexec languages [--json]
    codeexec doctor [--json]
    codeexec image build [LANGUAGE ...] [--rebuild]
    codeexec store migrate STORE
    codeexec store lifecycle STORE [--move-after DAYS] [--delete-after DAYS] [--json]
    codeexec store query STORE [--user U] [--problem P] [--verdict V]
                         [--limit N] [--cursor C] [--json]
    codeexec worker --broker URL [--result-backend URL] [--sandbox NAME] [--slots N]
                    [--concurrency N] [--pool solo|prefork] [--languages L,L]
                    [--recycle-after N]
                    [--visibility-timeout S] [--cache URL] [--uid-base UID]
                    [CELERY WORKER OPTION ...]

STORE names a store the same way in every command: ``--store DIR`` (everything local
there), or ``--db URL --hot DIR|URL``; either may add ``--cold URL [--cold-option K=V]``.
``store query`` and ``store lifecycle`` open only a store that exists.

Also ``python -m codeexec``. Exit status: 0 accepted, 1 any other verdict, 2 bad usage,
input or configuration (one line on stderr), 3 the judging itself failed (a sandbox,
a database or a directory that does not work).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs

from ._errors import (
    CodeExecError,
    ConfigurationError,
    FormatError,
    SandboxUnavailableError,
    SubmissionError,
    UnknownSandboxError,
)
from ._executor import Executor
from ._languages import LanguageRegistry, default_languages
from ._model import Limits, Result, Submission, TestCase, Verdict
from ._problem import load_problem

_EXTENSIONS = {
    ".py": "python",
    ".c": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".js": "javascript",
    ".mjs": "javascript",
    ".java": "java",
    ".sh": "bash",
}


class _UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codeexec", description="Run untrusted code safely.")
    parser.add_argument("--version", action="version", version=f"codeexec {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a program and judge it")
    run.add_argument("file", help="source file to run ('-' reads stdin; give --language)")
    run.add_argument("--language", "-l", help="language (default: from the file extension)")
    run.add_argument("--backend", "-b", default="process", help="sandbox name (default: process)")
    source = run.add_mutually_exclusive_group()
    source.add_argument("--stdin", help="text given to the program on stdin")
    source.add_argument(
        "--tests",
        help='JSON file: a list of {"stdin": ..., "expected": ..., "args": [...], "name": ...}',
    )
    source.add_argument(
        "--problem",
        help="TOML problem file: tests or groups, limits, checker, interactor (see the guide)",
    )
    run.add_argument("--cpu-time", type=float, help="CPU seconds (default 2)")
    run.add_argument("--wall-time", type=float, help="wall seconds (default 3*cpu+1)")
    run.add_argument("--memory", help="memory limit, e.g. 256M (default 256M)")
    run.add_argument("--output", help="stdout+stderr kept, e.g. 1M (default 1M)")
    run.add_argument("--checker", help="exact, default (the default), tokens or float")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    kept = _store_arguments(run, "keep the submission and its result in a store")
    kept.add_argument("--user", help="the submission's user_id (stored with it)")
    kept.add_argument(
        "--problem-id", help="the submission's problem_id (default: the problem file's id)"
    )
    kept.add_argument("--id", help="the record's id (default: a new UUIDv7); again: a revision")

    langs = sub.add_parser("languages", help="list languages and their toolchains")
    langs.add_argument("--json", action="store_true")

    doctor = sub.add_parser("doctor", help="which backends and protections work on this host")
    doctor.add_argument("--json", action="store_true")

    image = sub.add_parser("image", help="Docker images for the docker sandbox")
    image_actions = image.add_subparsers(dest="action", required=True)
    build = image_actions.add_parser(
        "build", help="build an image from this host's toolchains, offline (docker import)"
    )
    build.add_argument("languages", nargs="*", help="languages it holds (none: a shell only)")
    build.add_argument("--rebuild", action="store_true", help="import it even if it exists")

    store = sub.add_parser("store", help="the store of submissions: migrate, lifecycle, query")
    actions = store.add_subparsers(dest="action", required=True)
    migrate = actions.add_parser("migrate", help="make the store, or bring its schema up to date")
    _store_arguments(migrate, "the store to migrate (--db alone is enough)")
    lifecycle = actions.add_parser("lifecycle", help="move old blobs to cold, delete expired")
    query = actions.add_parser("query", help="list stored submissions, newest first")
    for action in (lifecycle, query):
        _store_arguments(action, "the store (it must exist)")
        action.add_argument("--json", action="store_true")
    lifecycle.add_argument("--move-after", type=float, help="days before blobs go cold")
    lifecycle.add_argument("--delete-after", type=float, help="days before records are deleted")
    query.add_argument("--user", help="user_id")
    query.add_argument("--problem", help="problem_id")
    query.add_argument(
        "--verdict", choices=[v.value for v in Verdict], help="verdict, e.g. accepted"
    )
    query.add_argument("--limit", type=int, default=20)
    query.add_argument("--cursor", help="the 'next' of the previous page")

    worker = sub.add_parser("worker", help="run a Celery worker that judges submissions")
    worker.add_argument("--broker", required=True, help="broker URL, e.g. redis://127.0.0.1/0")
    worker.add_argument("--result-backend", help="result backend URL (default: the broker)")
    worker.add_argument("--sandbox", default="process", help="sandbox name (default: process)")
    worker.add_argument("--slots", type=int, default=1, help="sandbox slots per pool process")
    worker.add_argument(
        "--concurrency", type=int, default=1, help="pool processes with --pool prefork"
    )
    worker.add_argument("--languages", help="languages to serve (default: every one this host has)")
    worker.add_argument(
        "--pool",
        choices=["solo", "prefork"],
        default="solo",
        help="solo (default): jobs are judged from the worker process, the least"
        " overhead; prefork: from --concurrency pool processes",
    )
    worker.add_argument(
        "--recycle-after",
        type=int,
        default=1000,
        help="jobs a sandbox judges before it is made anew (default 1000)",
    )
    worker.add_argument(
        "--visibility-timeout",
        type=float,
        default=300.0,
        help="seconds before a job of a vanished worker is delivered again (> longest run)",
    )
    worker.add_argument("--cache", help="result cache URL shared with the hosts")
    worker.add_argument(
        "--uid-base", type=int, default=61000, help="first run uid (distinct per worker)"
    )
    worker.add_argument("--hostname", help="Celery node name (default: codeexec-<pid>@host)")
    worker.add_argument("--loglevel", default="warning")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("codeexec")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _store_arguments(parser: argparse.ArgumentParser, what: str) -> Any:
    """The options that name a store, the same in every command."""
    group = parser.add_argument_group(
        "store", f"{what}: --store DIR, or --db URL with --hot DIR|URL"
    )
    group.add_argument("--store", metavar="DIR", help="everything local under DIR")
    group.add_argument("--db", metavar="URL", help="SQLAlchemy URL of the metadata database")
    group.add_argument("--hot", metavar="DIR|URL", help="the hot blob tier")
    group.add_argument("--cold", metavar="URL", help="the cold blob tier (e.g. s3://bucket/p)")
    group.add_argument(
        "--cold-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a storage option of the cold tier (e.g. endpoint_url=http://...)",
    )
    return group


def _open_store(args: argparse.Namespace, *, create: bool, **options: Any) -> Any:
    """The store the STORE options name (None when they name none)."""
    from .storage import Store

    if args.store and (args.db or args.hot):
        raise _UsageError("name the store by --store DIR, or by --db and --hot; not both")
    if not (args.store or args.db or args.hot):
        if args.cold or args.cold_option:
            raise _UsageError("--cold needs a store: --store DIR, or --db and --hot")
        return None
    options.update(cold=args.cold, cold_options=_options(args.cold_option), create=create)
    if args.store:
        return Store.at(args.store, **options)
    if not (args.db and args.hot):
        raise _UsageError("--db and --hot name a store together (or give --store DIR)")
    return Store(args.db, args.hot, **options)


def _load_tests(path: str) -> list[TestCase]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise _UsageError(f"cannot read tests from {path}: {exc}") from exc
    if not isinstance(data, list):
        raise _UsageError(f"{path}: expected a JSON list of tests")
    tests = []
    for i, item in enumerate(data):
        try:
            tests.append(TestCase.from_dict(item))
        except FormatError as exc:
            raise _UsageError(f"{path}: test {i}: {exc}") from None
    return tests


def _submission(args: argparse.Namespace) -> Submission:
    if args.file == "-":
        code = sys.stdin.buffer.read()
        if not args.language:
            raise _UsageError("reading code from stdin needs --language")
    else:
        try:
            code = Path(args.file).read_bytes()
        except OSError as exc:
            raise _UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
    language = args.language or _EXTENSIONS.get(Path(args.file).suffix.lower())
    if not language:
        raise _UsageError(f"cannot tell the language of {args.file}; give --language")
    limits: dict[str, Any] = {}
    for name in ("cpu_time", "wall_time", "memory", "output"):
        value = getattr(args, name)
        if value is not None:
            limits[name] = value
    metadata = {
        key: value
        for key, value in (
            ("user_id", args.user),
            ("problem_id", args.problem_id),
            ("submission_id", args.id),
        )
        if value is not None
    }
    if args.problem:
        if args.checker:
            raise _UsageError("--checker and --problem: the problem file names its checker")
        problem = load_problem(args.problem)
        return problem.submission(language, code, limits=limits, metadata=metadata)
    if args.tests:
        tests = _load_tests(args.tests)
    else:
        tests = [TestCase(stdin=args.stdin or "")]
    return Submission(
        language=language,
        code=code,
        tests=tests,
        limits=Limits(**limits),
        checker=args.checker,
        metadata=metadata,
    )


def _print_result(result: Result) -> None:
    print(f"verdict: {result.verdict.value} ({result.verdict.short})")
    if "submission_id" in result.metadata:
        print(f"stored as: {result.metadata['submission_id']}")
    if result.compile is not None and not result.compile.ok:
        print(f"compile: {result.compile.message}")
        if result.compile.stderr:
            print(result.compile.stderr.rstrip())
    if result.groups or result.max_score != len(result.tests):
        print(f"score: {result.score:g} / {result.max_score:g}")
    for group in result.groups:
        print(
            f"group {group.name}: {group.verdict.value}  {group.score:g} / {group.max_score:g}"
            + (f"  ({group.message})" if group.message else "")
        )
    for i, test in enumerate(result.tests, 1):
        name = test.name or f"test {i}"
        print(
            f"{name}: {test.verdict.value}  cpu {test.cpu_time:.3f}s  wall {test.wall_time:.3f}s"
            f"  mem {test.memory_peak / 2**20:.1f}MiB"
            + (f"  ({test.message})" if test.message else "")
        )
        if len(result.tests) == 1:
            if test.stdout:
                print("--- stdout ---")
                print(test.stdout.rstrip("\n"))
            if test.stderr:
                print("--- stderr ---")
                print(test.stderr.rstrip("\n"))


def _cmd_run(args: argparse.Namespace) -> int:
    submission = _submission(args)
    if not (args.store or args.db or args.hot) and (args.user or args.problem_id or args.id):
        raise _UsageError("--user, --problem-id and --id are kept with a store: give --store DIR")
    store = _open_store(args, create=True)
    try:
        with Executor(args.backend, store=store) as executor:
            result = executor.run(submission)
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        _print_result(result)
    return 0 if result.verdict is Verdict.ACCEPTED else 1


def _cmd_languages(args: argparse.Namespace) -> int:
    rows = LanguageRegistry(default_languages()).describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = row["version"] if row["available"] else f"unavailable: {row['error']}"
        aliases = f" ({', '.join(row['aliases'])})" if row["aliases"] else ""
        print(f"{row['name']}{aliases}: {state}")
    return 0


def _self_test(sandbox: Any) -> str:
    """Run one trivial program: "ok", or what went wrong."""
    from .backends import RunRequest

    outcome = sandbox.run(
        RunRequest(argv=[shutil.which("true") or "/bin/true"], env={"PATH": "/usr/bin:/bin"})
    )
    if outcome.error:
        return str(outcome.error)
    return "ok" if outcome.exit_code == 0 else f"exit code {outcome.exit_code}"


def doctor_report() -> dict[str, Any]:
    """What works on this host: each backend, its protections, and why not."""
    from .backends import available_sandboxes, get_sandbox
    from .backends._cgroups import describe as describe_cgroups
    from .backends._protocol import Capability

    report: dict[str, Any] = {
        "uid": os.geteuid(),
        "kernel": os.uname().release,
        "cgroups": describe_cgroups(),
        "backends": {},
    }
    for name in available_sandboxes():
        try:
            sandbox = get_sandbox(name)
        except CodeExecError as exc:
            report["backends"][name] = {"available": False, "reason": str(exc)}
            continue
        try:
            caps = set(sandbox.capabilities)
            report["backends"][name] = {
                "available": True,
                "version": sandbox.version,
                "concurrency": sandbox.concurrency,
                "capabilities": sorted(caps),
                "missing": dict(sandbox.missing),
                "isolated": caps >= Capability.ISOLATION,
                "self_test": _self_test(sandbox),
            }
        finally:
            sandbox.close()
    report["languages"] = LanguageRegistry(default_languages()).describe()
    return report


def _cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"uid {report['uid']}, kernel {report['kernel']}")
    cg = report["cgroups"]
    print(
        f"cgroups: {cg['hierarchy']} hierarchy, "
        + (f"using v{cg['using'][1:]}" if "using" in cg else f"UNUSABLE: {cg['missing']}")
    )
    if "v2" in cg:
        v2 = cg["v2"]
        print(
            f"  v2 group {v2['group']}: controllers {' '.join(v2['controllers']) or 'none'},"
            f" enabled below {' '.join(v2['enabled_below']) or 'none'}"
            + ("" if v2["writable"] else " (not writable)")
        )
    for controller, path in cg.get("v1", {}).items():
        print(f"  v1 {controller}: {path or 'not mounted'}")
    for name, info in report["backends"].items():
        if not info["available"]:
            print(f"backend {name}: UNAVAILABLE: {info['reason']}")
            continue
        state = "fully isolated" if info["isolated"] else "NOT fully isolated"
        print(f"backend {name}: {info['version']}, {info['concurrency']} slots, {state}")
        print(f"  self test: {info['self_test']}")
        for cap in info["capabilities"]:
            print(f"  ok       {cap}")
        for cap, why in info["missing"].items():
            print(f"  missing  {cap}: {why}")
    for row in report["languages"]:
        state = row["version"] if row["available"] else f"unavailable: {row['error']}"
        print(f"language {row['name']}: {state}")
    return 0


def _options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"a storage option is KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)  # numbers, booleans, objects
        except ValueError:
            options[key] = value
    return options


def _cmd_image(args: argparse.Namespace) -> int:
    from .backends import build_image

    registry = LanguageRegistry(default_languages())
    for name in args.languages:
        registry.get(name)  # an unknown language is a usage error, before any work
    print(build_image(args.languages, registry=registry, rebuild=args.rebuild))
    return 0


def _cmd_store(args: argparse.Namespace) -> int:
    from .storage import MetadataStore

    if args.action == "migrate":
        if args.db and not (args.hot or args.store):
            MetadataStore(args.db).close()  # the schema is all a migration touches
        else:
            store = _open_store(args, create=True, durability="none")
            if store is None:
                raise _UsageError("name the store to migrate: --store DIR, or --db URL")
            store.close()
        print(f"{args.db or args.store}: schema up to date")
        return 0
    with _open_store(args, create=False, durability="none") or _no_store() as store:
        if args.action == "lifecycle":
            report = store.lifecycle(move_after=args.move_after, delete_after=args.delete_after)
            data: Any = attrs.asdict(report)
            text = (
                f"moved {report.records_moved} records ({report.blobs_moved} blobs) to cold,"
                f" deleted {report.records_deleted} records ({report.blobs_deleted} blobs)"
                + (f"; {len(report.missing)} blobs were missing" if report.missing else "")
            )
        else:
            page = store.query(
                user_id=args.user,
                problem_id=args.problem,
                verdict=args.verdict,
                limit=args.limit,
                cursor=args.cursor,
            )
            rows = [attrs.asdict(r) | {"created_at": r.created_at.isoformat()} for r in page]
            data = {"records": rows, "next": page.next}
            text = "\n".join(
                f"{r.id}  {r.created_at:%Y-%m-%d %H:%M:%S}  {r.verdict:<22} {r.language:<10}"
                f" user={r.user_id} problem={r.problem_id}"
                for r in page
            ) + (f"\nnext page: --cursor {page.next}" if page.next else "")
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _no_store() -> Any:
    raise _UsageError("name the store: --store DIR, or --db URL with --hot DIR|URL")


def _cmd_worker(args: argparse.Namespace) -> int:
    from .dispatch._celery import celery_app, queue_name

    app = celery_app(
        args.broker,
        args.result_backend,
        visibility_timeout=args.visibility_timeout,
        recycle_after=args.recycle_after,
    )
    app.conf.update(
        codeexec_sandbox=args.sandbox,
        codeexec_sandbox_options={"slots": args.slots},
        codeexec_cache=args.cache,
        codeexec_uid_base=args.uid_base,
    )
    registry = LanguageRegistry(default_languages())
    if args.languages:
        languages = [registry.get(name).name for name in args.languages.split(",")]
    else:
        languages = registry.available()
    queues = [queue_name(args.sandbox, None)] + [queue_name(args.sandbox, n) for n in languages]
    argv = [
        "worker",
        f"--pool={args.pool}",
        f"--concurrency={args.concurrency}",
        f"--queues={','.join(queues)}",
        f"--loglevel={args.loglevel}",
        f"--hostname={args.hostname or f'codeexec-{os.getpid()}@%h'}",
        "--without-gossip",
        "--without-mingle",
        # Celery's own worker options (-E, --autoscale, --max-memory-per-child, ...):
        # Celery checks them.
        *args.celery_options,
    ]
    app.worker_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``codeexec`` command (and of ``python -m codeexec``)."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "worker":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.celery_options = extra
    commands = {
        "run": _cmd_run,
        "languages": _cmd_languages,
        "doctor": _cmd_doctor,
        "image": _cmd_image,
        "store": _cmd_store,
        "worker": _cmd_worker,
    }
    try:
        return commands[args.command](args)
    except _USAGE_ERRORS as exc:
        print(f"codeexec: {exc}", file=sys.stderr)
        return 2
    except (CodeExecError, OSError) as exc:
        print(f"codeexec: error: {exc}", file=sys.stderr)
        return 3


#: Errors of what the user gave (exit 2); any other failure is the judge's (exit 3).
_USAGE_ERRORS = (
    _UsageError,
    SubmissionError,
    ConfigurationError,
    FormatError,
    SandboxUnavailableError,
    UnknownSandboxError,
)


if __name__ == "__main__":
    sys.exit(main())
