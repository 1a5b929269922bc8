"""The process sandbox against the shared conformance suite."""

import pytest

from codeexec.backends.process import ProcessSandbox
from codeexec.testing import SandboxConformance


class TestProcessSandbox(SandboxConformance):
    @pytest.fixture(scope="class")
    @classmethod
    def sandbox(cls):
        sb = ProcessSandbox(slots=2)
        yield sb
        sb.close()
