import subprocess
import sys

import codeexec


def test_import_is_light():
    code = (
        "import sys, codeexec; "
        "heavy = ('docker', 'redis', 'sqlalchemy', 'celery', 'fsspec'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_exported_once():
    assert len(codeexec.__all__) == len(set(codeexec.__all__))
    for name in codeexec.__all__:
        assert hasattr(codeexec, name), name


def test_exception_tree():
    for name in ("SubmissionError", "SandboxError", "CacheError", "StorageError", "ToolchainError"):
        assert issubclass(getattr(codeexec, name), codeexec.CodeExecError)
    assert issubclass(codeexec.UnknownLanguageError, LookupError)
    assert issubclass(codeexec.JobTimeout, TimeoutError)
