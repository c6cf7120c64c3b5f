"""Real redis-server and PostgreSQL processes for tests, in temporary directories, cleaned up after.

- ``redis-server`` listens on a unix socket only (``--port 0``), without persistence. It is ready in
  tens of milliseconds, so each test gets its own.
- PostgreSQL: one server per test session (``initdb`` takes most of a second), one fresh database per
  test. ``initdb`` refuses to run as root, so as root it runs as the ``postgres`` user (``runuser``);
  the data directory and the socket live in a temporary directory that user can write.

Where a binary is missing the tests that need it are skipped, saying which; with
``CLLM_REQUIRE_SERVICES=1`` (as CI sets) they fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "RedisServer", "require"]

REQUIRE_ENV = "CLLM_REQUIRE_SERVICES"


def require(binary: str | None, what: str) -> str:
    """``binary`` when found; else skip (or fail, under ``CLLM_REQUIRE_SERVICES=1``) saying why."""
    if binary:
        return binary
    reason = f"{what} is not installed (apt-get install redis-server postgresql)"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}; {REQUIRE_ENV}=1 makes this a failure")
    pytest.skip(reason)


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if path.exists():
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                return
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args[0]} did not start in {timeout:g} s")
        time.sleep(0.005)


class RedisServer:
    """One ``redis-server`` on a unix socket in its own directory; `stop` and `start` it at will."""

    def __init__(self, directory: Path) -> None:
        self.binary = require(shutil.which("redis-server"), "redis-server")
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        args = [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(self.socket, self.process, 10)

    def stop(self) -> None:
        """Kill the server at once (SIGKILL), as a crash or a network cut would end it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.socket.unlink(missing_ok=True)

    def client(self) -> object:
        import redis

        return redis.Redis(unix_socket_path=str(self.socket))


def _postgres_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    """One PostgreSQL server with its data and socket in a temporary directory."""

    def __init__(self) -> None:
        self.initdb = require(_postgres_bin("initdb"), "PostgreSQL (initdb)")
        self.pg_ctl = require(_postgres_bin("pg_ctl"), "PostgreSQL (pg_ctl)")
        self.directory = Path(tempfile.mkdtemp(prefix="cllm-pg-"))
        self.directory.chmod(0o777)  # the postgres user writes here when the tests run as root
        self.data = self.directory / "data"
        self._names = itertools.count()
        self.started = False

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}")

    def start(self) -> None:
        self._run(
            self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
        )
        options = f"-c listen_addresses='' -k {self.directory} -c fsync=off -c full_page_writes=off"
        self._run(
            self.pg_ctl, "-D", str(self.data), "-w", "-l", str(self.directory / "log"), "-o", options, "start"
        )
        self.started = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.directory}"

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(Exception):
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test."""
    directory = Path(tempfile.mkdtemp(prefix="cllm-redis-"))
    server = RedisServer(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a new, empty database for one test."""
    return postgres_server.create_database()
