"""codeexec: run untrusted code safely, fast and at scale.

::

    import codeexec

    with codeexec.Executor() as ex:
        result = ex.run(codeexec.Submission(
            language="python",
            code="print(sum(map(int, input().split())))",
            tests=[codeexec.TestCase(stdin="1 2", expected="3")],
            limits=codeexec.Limits(cpu_time=1, memory="128M"),
        ))
    print(result.verdict)          # Verdict.ACCEPTED

Importing codeexec imports no optional dependency (docker, redis, sqlalchemy, celery).
"""

from ._checkers import (
    CallableChecker,
    Check,
    Checker,
    DefaultChecker,
    ExactChecker,
    FloatChecker,
    RecordedChecker,
    TokenChecker,
)
from ._errors import (
    CacheError,
    CodeExecError,
    ConfigurationError,
    DispatchError,
    FormatError,
    JobCancelled,
    JobError,
    JobTimeout,
    LimitsError,
    QueueFull,
    RateLimited,
    RecordNotFoundError,
    SandboxError,
    SandboxUnavailableError,
    StorageConfigError,
    StorageError,
    StorageUnavailableError,
    StoreFullError,
    SubmissionError,
    ToolchainError,
    UnknownLanguageError,
    UnknownSandboxError,
)
from ._executor import Executor, Job, JobStatus, as_completed
from ._languages import Language, LanguageRegistry, Toolchain, default_languages
from ._model import (
    CompileResult,
    File,
    GroupResult,
    Limits,
    Result,
    Submission,
    TestCase,
    TestGroup,
    TestResult,
    Verdict,
)
from ._problem import Problem, load_problem
from ._programs import CheckerProgram, Generator, Interactor
from .backends import available_sandboxes, get_sandbox

__version__ = "0.1.0"

__all__ = [
    "as_completed",
    "load_problem",
    "CacheError",
    "CallableChecker",
    "Check",
    "CheckerProgram",
    "Interactor",
    "Problem",
    "Checker",
    "CodeExecError",
    "ConfigurationError",
    "CompileResult",
    "DispatchError",
    "FormatError",
    "DefaultChecker",
    "ExactChecker",
    "Executor",
    "File",
    "Generator",
    "GroupResult",
    "FloatChecker",
    "Job",
    "JobCancelled",
    "JobError",
    "JobStatus",
    "JobTimeout",
    "Language",
    "LanguageRegistry",
    "Limits",
    "LimitsError",
    "QueueFull",
    "RecordedChecker",
    "RateLimited",
    "Result",
    "SandboxError",
    "SandboxUnavailableError",
    "RecordNotFoundError",
    "StorageConfigError",
    "StorageError",
    "StorageUnavailableError",
    "StoreFullError",
    "Submission",
    "SubmissionError",
    "TestCase",
    "TestGroup",
    "TestResult",
    "TokenChecker",
    "Toolchain",
    "ToolchainError",
    "UnknownLanguageError",
    "UnknownSandboxError",
    "Verdict",
    "available_sandboxes",
    "default_languages",
    "get_sandbox",
    "__version__",
]
