from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import redis

from conftest import ROOT
from movieapi.tests.pg_cluster import PgCluster, PgUnavailable


@dataclass
class RedisServer:
    """A throwaway redis-server on its own port (no persistence), which a test may stop and start again."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed; the rate-limit tests need a real Redis (apt install redis)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this test session only: nothing else's keys, stopped at the end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = RedisServer(port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def replica_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL primary with the `movieapi` database migrated, and a streaming replica of it (pg_cluster: its
    own primary, since the suite's server has no replication line in pg_hba.conf). Stopped and removed at the end."""
    try:
        cluster = PgCluster()
    except PgUnavailable as reason:
        pytest.skip(f"no streaming replica: {reason}")
    # pg_stat_statements, where installed, shows which statements reached which server.
    if (cluster.bindir.parent / "lib" / "pg_stat_statements.so").exists():
        cluster.settings["shared_preload_libraries"] = "pg_stat_statements"
    with cluster:
        primary = cluster.start_primary()
        primary.query("CREATE DATABASE movieapi")
        if "shared_preload_libraries" in cluster.settings:
            primary.query("CREATE EXTENSION pg_stat_statements", dbname="movieapi")
        manage_on(primary.url("movieapi"), "migrate", "--noinput", "-v", "0")
        cluster.start_replica()
        yield cluster


def manage_on(database_url: str, *args: str) -> None:
    """Run manage.py on that database (without replicas); fail the test with its output if it fails."""
    command = [sys.executable, "manage.py", *args]
    env = {**os.environ, "DATABASE_URL": database_url, "DATABASE_REPLICA_URLS": ""}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
