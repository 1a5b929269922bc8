import pytest

import codeexec


@pytest.fixture(scope="session")
def process_sandbox():
    """One process sandbox for the whole session (slots start lazily)."""
    sb = codeexec.get_sandbox("process", slots=2)
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def executor(process_sandbox):
    ex = codeexec.Executor(process_sandbox)
    yield ex
    ex.close()
