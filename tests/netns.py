"""Linux network namespaces as stand-in hosts for the multi-host tests (``tests/gateway/test_multihost.py``).

One machine plays several: each "host" is a network namespace joined to a
bridge in the root namespace by a veth pair, with its own address in a
private /24 (``10.231.<n>.0/24``, ``<n>`` chosen per test process so that
pytest-xdist workers never share a subnet).  PostgreSQL and Redis listen on
127.0.0.1 of the root namespace only, which no namespace can reach, so a
small TCP forwarder (a subprocess running this module) listens on the
bridge's address, the "third address" every host uses, and relays to them;
their configuration stays untouched.

Only the network is separate: the hosts share the filesystem (model store,
jobs directory), which stands in for the shared volume a real deployment
mounts.  Needs root (``CAP_NET_ADMIN`` and the ability to create namespaces);
:func:`namespaces_unavailable` says why not where that is refused.

This module imports no Django so the forwarder starts in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

#: The first two octets of every test subnet; the third is chosen per test process.
SUBNET_PREFIX = "10.231"
#: Serialises subnet choice between test processes (xdist workers start topologies at the same time).
_ALLOCATION_LOCK = Path("/tmp/maas-netns.lock")
_NAME_RE = re.compile(r"^maas-mh-(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@cache
def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be used here (``None`` when they can); probed once per process."""
    if sys.platform != "linux":
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    probe = f"maas-mh-{os.getpid()}-probe"
    try:
        made = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if made.returncode != 0:
        return f"`ip netns add` is not permitted here: {made.stderr.strip() or made.returncode}"
    link = _ip("link", "add", f"mh{os.getpid()}x", "type", "bridge", check=False)
    _ip("link", "del", f"mh{os.getpid()}x", check=False)
    _ip("netns", "del", probe, check=False)
    if link.returncode != 0:
        return f"creating a bridge is not permitted here: {link.stderr.strip() or link.returncode}"
    return None


def relocated_url(url: str, host: str, port: int) -> str:
    """``url`` (postgres:// or redis://) pointing at ``host:port``, keeping credentials, database and options."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _remove_leftovers() -> None:
    """Delete namespaces and bridges of test processes that died without cleaning up (SIGKILLed pytest)."""
    listed = _ip("netns", "list", check=False).stdout.split()
    for name in listed:
        match = _NAME_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _kill_namespace_processes(name)
            _ip("netns", "del", name, check=False)
    for line in _ip("-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        found = re.search(r"\d+: (mh(\d+)\d\db):", line)
        if found and not Path(f"/proc/{found.group(2)}").exists():
            _ip("link", "del", found.group(1), check=False)


def _kill_namespace_processes(namespace: str) -> None:
    pids = _ip("netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass
class Host:
    """One namespace: its name, its address on the bridge, and the processes started in it."""

    namespace: str
    address: str
    outside: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def popen(self, argv: list[str], **kwargs: object) -> subprocess.Popen:
        """Start ``argv`` inside this host (its own session, so the whole group can be signalled)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv], start_new_session=True, **kwargs)
        self.processes.append(proc)
        return proc

    def kill(self) -> None:
        """SIGKILL every process of this host at once: the host losing power, not a shutdown."""
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        _kill_namespace_processes(self.namespace)  # anything that left its process group
        for proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


class Topology:
    """A bridge in the root namespace, hosts hanging off it, and the forwarder to PostgreSQL and Redis.

    Use as a context manager; leaving it (also on failure) kills every
    process in every host, deletes the namespaces, the veth pairs and the
    bridge, and stops the forwarder.
    """

    _serial = 0

    def __init__(self, label: str = "") -> None:
        self.pid = os.getpid()
        # Interface names are global and at most 15 characters; a serial keeps topologies of one process
        # apart, since the kernel destroys a deleted namespace's devices asynchronously.
        Topology._serial = (Topology._serial + 1) % 100
        self.tag = f"{self.pid}{Topology._serial:02d}"
        self.label = re.sub(r"[^a-z0-9]", "", label.lower())[:8] or "t"
        self.bridge = f"mh{self.tag}b"
        self.gateway_address = ""
        self.hosts: list[Host] = []
        self._forwarder: subprocess.Popen | None = None

    def __enter__(self) -> Topology:
        try:
            self._create_bridge()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_bridge(self) -> None:
        with open(_ALLOCATION_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _remove_leftovers()
            _ip("link", "del", self.bridge, check=False)  # a leftover of this very pid (pid reuse)
            used = set(re.findall(rf"inet {re.escape(SUBNET_PREFIX)}\.(\d+)\.", _ip("-4", "-o", "addr").stdout))
            start = self.pid % 250
            octet = next(
                (n for n in ((start + i) % 250 + 1 for i in range(250)) if str(n) not in used),
                None,
            )
            if octet is None:
                raise RuntimeError(f"every {SUBNET_PREFIX}.N.0/24 test subnet is in use")
            self.subnet = f"{SUBNET_PREFIX}.{octet}"
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        self.gateway_address = f"{self.subnet}.1"

    def add_host(self, role: str) -> Host:
        """A new namespace with loopback up and ``eth0`` on the bridge; returns it with its address."""
        index = len(self.hosts) + 2
        namespace = f"maas-mh-{self.pid}-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{self.label}-{role}"
        outside, inside = f"mh{self.tag}v{index}", f"mh{self.tag}p{index}"
        _ip("netns", "add", namespace)
        host = Host(namespace=namespace, address=f"{self.subnet}.{index}", outside=outside)
        self.hosts.append(host)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("link", "set", inside, "netns", namespace)
        inns = ("-n", namespace)
        _ip(*inns, "link", "set", inside, "name", "eth0")
        _ip(*inns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip(*inns, "link", "set", "eth0", "up")
        _ip(*inns, "link", "set", "lo", "up")
        return host

    def forward(self, *targets: str) -> list[int]:
        """Relay ``host:port`` targets from the bridge address; returns the port opened for each, in order."""
        self._forwarder = subprocess.Popen(
            [sys.executable, "-m", "tests.netns", "forward", self.gateway_address, *targets],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = self._forwarder.stdout.readline() if self._forwarder.stdout else ""
        if not line:
            raise RuntimeError(f"the forwarder exited with {self._forwarder.wait(timeout=5)} before listening")
        return json.loads(line)

    def close(self) -> None:
        """Tear everything down; safe to call twice and after a partial set-up."""
        for host in self.hosts:
            host.kill()
            # Deleting one end deletes the pair at once; the namespace's own teardown is asynchronous.
            _ip("link", "del", host.outside, check=False)
            _ip("netns", "del", host.namespace, check=False)
        self.hosts = []
        if self._forwarder is not None and self._forwarder.poll() is None:
            os.killpg(self._forwarder.pid, signal.SIGKILL)
            self._forwarder.wait(timeout=10)
        _ip("link", "del", self.bridge, check=False)


# --- the forwarder (run as ``python -m tests.netns forward LISTEN TARGET...``) ---------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _forward(listen: str, targets: list[str], parent: int) -> None:
    servers = []
    for target in targets:
        host, port = target.rsplit(":", 1)

        async def relay(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str = host, port: int = int(port)
        ) -> None:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        servers.append(await asyncio.start_server(relay, listen, 0, backlog=1024))
    print(json.dumps([server.sockets[0].getsockname()[1] for server in servers]), flush=True)
    # Outlive no test: a test process killed outright never closes its topology, so follow it.
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


def main(argv: list[str]) -> None:
    """Command line of the forwarder subprocess: ``forward LISTEN_ADDRESS HOST:PORT [HOST:PORT ...]``."""
    if len(argv) < 3 or argv[0] != "forward":
        raise SystemExit("usage: python -m tests.netns forward LISTEN_ADDRESS HOST:PORT [HOST:PORT ...]")
    # Read before the ports are announced: the parent is certainly alive until it has read them.
    asyncio.run(_forward(argv[1], argv[2:], parent=os.getppid()))


if __name__ == "__main__":
    main(sys.argv[1:])
