"""The real PostgreSQL and Redis servers the suite talks to, and helpers to reach them."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from packaging.version import Version
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get("MLAPI_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MLAPI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# CI sets this: a missing server is then a failure, never a silent skip.
REQUIRE_SERVICES = os.environ.get("MLAPI_TEST_REQUIRE_SERVICES") == "1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable: {error}"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


def redis_available() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    return client


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the PostgreSQL server, dropped afterwards; yields its URL."""
    admin_url = make_url(POSTGRES_URL)
    name = f"mlapi_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 (any connection failure means "unreachable")
        admin.dispose()
        unavailable("PostgreSQL", exc)
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def unique_prefix() -> str:
    """A Redis key namespace of its own, so that test runs sharing one server never meet."""
    return f"mlapi-test-{uuid.uuid4().hex[:12]}"


class PrivateRedis:
    """A redis-server of the test's own, on a free port, that the test may stop and start again."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            unavailable("redis-server", FileNotFoundError("redis-server is not installed"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        assert self.binary is not None
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        for _ in range(100):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class PrivatePostgres:
    """A PostgreSQL server of the test's own (a fresh cluster on a free port) that the test may
    stop and start again; ``close()`` stops it and deletes the cluster.

    The shared server on 5432 is never touched. initdb refuses to run as root, so as root the
    server runs as the ``postgres`` OS user.
    """

    def __init__(self) -> None:
        # Debian keeps the server binaries out of PATH, one directory per major version.
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: Version(p.parts[-3]))
        pg_ctl = found[-1] if found else shutil.which("pg_ctl")
        if pg_ctl is None:
            unavailable("PostgreSQL binaries", FileNotFoundError("no pg_ctl under /usr/lib/postgresql/*/bin"))
        self.bin = Path(pg_ctl).parent
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # Under /tmp rather than pytest's tmp_path, which the postgres user cannot enter.
        self.directory = Path(tempfile.mkdtemp(prefix="mlapi-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        try:
            if self._as_postgres:
                shutil.chown(self.directory, "postgres", "postgres")
            self._pg_ctl(
                "initdb", "-o", "--auth=trust --username=postgres --encoding=UTF8 --locale=C --no-sync", timeout=60
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def _pg_ctl(self, *args: str, timeout: float = 30) -> None:
        command = [*self._as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.data), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> PrivatePostgres:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.directory}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._pg_ctl("start", "--wait", "--timeout=30", "-l", str(self.log), "-o", options, timeout=40)
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._pg_ctl("stop", "--wait", "-m", "fast")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
