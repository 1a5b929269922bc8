import sys
from pathlib import Path

import pytest

import codeexec

sys.path.insert(0, str(Path(__file__).parent))  # tests/services.py


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


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server on loopback for the whole session."""
    from services import RedisServer

    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL on loopback for the whole session."""
    from services import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (rclone serve s3) on loopback for the whole session."""
    from services import S3Server

    server = S3Server().start()
    yield server
    server.stop()
