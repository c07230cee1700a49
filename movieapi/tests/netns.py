"""Hosts on a private network of Linux network namespaces, for tests that run a multi-host stack on one machine.

    network = Network("10.213.0")               # a bridge in a namespace of its own
    api = network.add_host("api1", "10.213.0.11")  # a namespace joined to the bridge by a veth pair
    process = network.spawn(api, ["gunicorn", ...], env=..., log=...)
    network.call(client, lambda: http.client.HTTPConnection("10.213.0.11", 8000).request("GET", "/"))
    network.close()                             # every process killed, every namespace and file removed

Nothing is added to the machine's own namespace: the bridge lives in a namespace of its own, and each veth is
created with its ends already in their namespaces. So the hosts reach each other and nothing else, and the
machine's own namespace never routes to their addresses (a socket opened there would leave the machine: the
test process talks to the hosts only from threads that entered a host's namespace, `Network.call`).

Every name (namespaces, /etc/netns/<name>/, temp folders) starts with PREFIX and the pid of the process that made
it, so that the next run removes what a run killed before its finalizers left behind (`remove_leftovers`),
and never what a run still alive is using.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

PREFIX = "mvst"
NETNS_DIR = Path("/run/netns")
# `ip netns exec NAME` bind-mounts each file in /etc/netns/NAME/ over its namesake in /etc (hosts, resolv.conf).
NETNS_ETC = Path("/etc/netns")
CLONE_NEWNET = 0x40000000
_OWNED = re.compile(rf"^{PREFIX}(\d+)-")
_networks = itertools.count(1)  # several networks of one process have names of their own

T = TypeVar("T")


def unavailable() -> str | None:
    """Why this machine cannot build namespaces (not root, no `ip`), or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def _alive(pid: int) -> bool:
    """True if pid runs (a zombie, killed and not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}  # the name, in parentheses, may hold spaces


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def namespace_pids(netns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=30, check=False)
    return [int(pid) for pid in result.stdout.split()]


def _remove_namespace(netns: str) -> None:
    """Kill the processes inside a namespace of ours (by pid), then delete it; its veths go with it."""
    for _ in range(50):
        # Only threads of ours enter namespaces, never the main one, so this process is never listed; never kill it.
        pids = [pid for pid in namespace_pids(netns) if pid != os.getpid()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=30, check=False)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def _owner_gone(name: str) -> bool:
    match = _OWNED.match(name)
    return match is not None and not _alive(int(match[1]))


def remove_leftovers() -> list[str]:
    """Remove the namespaces, /etc/netns folders and temp folders of runs whose process is gone; say which."""
    removed = []
    for name in sorted({path.name for path in (*NETNS_DIR.glob(f"{PREFIX}*"), *NETNS_ETC.glob(f"{PREFIX}*"))}):
        if _owner_gone(name):
            _remove_namespace(name)
            removed.append(name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        if _owner_gone(path.name):
            remove_folder(path)
            removed.append(str(path))
    return removed


def remove_folder(folder: Path) -> None:
    """Remove a temp folder of ours and the folders it names in its `owned` file (made by code that is not ours)."""
    with contextlib.suppress(OSError):
        for line in (folder / "owned").read_text().splitlines():
            shutil.rmtree(line, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def enter(netns: str) -> None:
    """Move the calling thread (only it) into a namespace: the sockets it opens from now on are that host's."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Host:
    """One namespace on the network: its role ("proxy", "api1"), its namespace's name and its addresses."""

    role: str
    netns: str
    addresses: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.addresses[0]

    def command(self, argv: Sequence[str]) -> list[str]:
        """argv run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class Network:
    """A /24 of hosts (`<network>.<n>`) on one bridge; close() removes everything it made, and is safe to repeat."""

    network: str  # the first three octets, e.g. "10.213.0"
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    folder: Path = field(init=False)
    _number: int = field(init=False)
    _switch: str = field(init=False)

    def __post_init__(self) -> None:
        self._number = next(_networks)
        self._switch = self._name("switch")
        self.folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self.folder.chmod(0o755)  # servers that drop root (nginx's workers, PostgreSQL) read below it
        try:
            _ip("netns", "add", self._switch)
            _ip("-n", self._switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self._switch, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise

    def _name(self, role: str) -> str:
        return f"{PREFIX}{os.getpid()}-{self._number}-{role}"

    @property
    def namespaces(self) -> list[str]:
        return [self._switch, *(host.netns for host in self.hosts.values())]

    def own_folder(self, path: Path) -> None:
        """Remove path with this network's folder, also after a crash (a folder made by code that is not ours)."""
        with (self.folder / "owned").open("a") as owned:
            owned.write(f"{path}\n")

    def add_host(self, role: str, *addresses: str, etc_hosts: dict[str, Sequence[str]] | None = None) -> Host:
        """A namespace with lo up and eth0 on the bridge holding addresses (last octets or full); etc_hosts gives it
        an /etc/hosts of its own (set_etc_hosts)."""
        netns = self._name(role)
        host = Host(role, netns, tuple(a if "." in a else f"{self.network}.{a}" for a in addresses))
        self.hosts[role] = host
        _ip("netns", "add", netns)
        port = f"p{len(self.hosts)}"
        _ip("link", "add", "name", "eth0", "netns", netns, "type", "veth", "peer", "name", port, "netns", self._switch)
        _ip("-n", self._switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        for address in host.addresses:
            _ip("-n", netns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        if etc_hosts is not None:
            self.set_etc_hosts(host, etc_hosts)
        return host

    def set_etc_hosts(self, host: Host, names: dict[str, Sequence[str]]) -> None:
        """The host's own /etc/hosts: {name: [address, ...]}, every address of a name on a line of its own (glibc
        then resolves the name to all of them). Written in place, so processes started earlier see it too: `ip
        netns exec` bind-mounted this very file over their /etc/hosts."""
        lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for name, listed in names.items() for address in listed]
        (NETNS_ETC / host.netns).mkdir(parents=True, exist_ok=True)
        (NETNS_ETC / host.netns / "hosts").write_text("\n".join(lines) + "\n")

    def spawn(
        self, host: Host, argv: Sequence[str], *, env: dict[str, str] | None = None, log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start argv in host's namespace, in a process group of its own, output to log; close() kills it."""
        with log.open("ab") as out:
            process = subprocess.Popen(
                host.command(argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)
        return process

    def call(self, host: Host, function: Callable[[], T]) -> T:
        """function() run in a thread inside host's namespace: what it connects to, it reaches from that host."""
        results: list[T] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                enter(host.netns)
                results.append(function())
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=run, name=f"in-{host.role}", daemon=True)
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return results[0]

    def thread(self, host: Host, target: Callable[..., Any], *args: Any) -> threading.Thread:
        """A started thread that runs target(*args) inside host's namespace."""

        def run() -> None:
            enter(host.netns)
            target(*args)

        thread = threading.Thread(target=run, name=f"in-{host.role}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Kill every process started here (its whole group), then remove the namespaces, their files and the folder."""
        for process in self.processes:
            if process.poll() is None:  # a reaped leader's pid may be another's by now
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
        self.processes.clear()
        for host in self.hosts.values():
            _remove_namespace(host.netns)
        self.hosts.clear()
        _remove_namespace(self._switch)
        remove_folder(self.folder)
