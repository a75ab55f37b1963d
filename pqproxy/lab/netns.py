"""Network namespaces: build a small routed topology, run processes inside it, always tear it down.

The test network rules (DESIGN.md): multi-hop topologies live in namespaces the test creates and deletes itself, with
198.18.0.0/15 addresses (RFC 2544's benchmarking range) inside them. A ``Lab`` owns its namespaces and every process
it started in them; ``close()`` (or leaving the ``with`` block) stops those processes by pid and deletes the
namespaces, which removes their veths, routes and nftables rulesets with them. Namespace names carry the pid and a
per-process counter, so parallel test workers (and two labs in one worker) never collide; interface names only need
to be unique inside their own namespace, because each veth end is created directly in its namespace.

Typical use (see ``chain``)::

    with Lab("hop") as lab:
        path = chain(lab, server_mtu=1000)
        lab.nft(path.router2, "add table inet lab ...")
        lab.run(path.client, ["ping", "-c1", path.server_addr])
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from ..processes import stop_process

LAB_ENV = "PQPROXY_LAB"  # set in the environment of every process ``Lab.spawn`` starts
COMMAND_TIMEOUT = 10.0  # one ip/nft/sysctl command; they take milliseconds
STOP_TIMEOUT = 5.0  # a process we started in a namespace, after SIGTERM
_counter = itertools.count()


class NetnsError(RuntimeError):
    """A namespace command failed."""


def netns_unavailable() -> str | None:
    """Why namespaces cannot be built here (None when they can): root and iproute2 are needed."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "network namespaces need iproute2 (ip)"
    return None


def _run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, check: bool = True,
         input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input_text)
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


class Lab:
    """A set of namespaces and the processes started in them; all of it goes away in ``close()``."""

    def __init__(self, tag: str = "lab", *, prefix: str | None = None) -> None:
        """``prefix``: a fixed name for the namespaces (``pqproxy lab`` uses one, so that another process can
        find them again); by default one unique to this process and this Lab."""
        self.prefix = prefix or f"pq{tag}{os.getpid()}n{next(_counter)}"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[str]] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- building ---------------------------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """Create the namespace ``<prefix>-<role>`` with its loopback up; returns its name."""
        name = f"{self.prefix}-{role}"
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str, *, mtu: int | None = None) -> None:
        """A veth pair between namespaces a and b, addresses in CIDR form ("198.18.1.1/24"), both ends up."""
        _run(["ip", "-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b])
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if mtu is not None:
                _run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(mtu)])
            _run(["ip", "-n", ns, "addr", "add", addr, "dev", ifname])
            _run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def route(self, ns: str, dest: str, via: str) -> None:
        _run(["ip", "-n", ns, "route", "add", dest, "via", via])

    def forward(self, ns: str) -> None:
        """Make ``ns`` a router (IPv4 forwarding is per namespace)."""
        self.run(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])

    def nft(self, ns: str, script: str) -> None:
        """Load an nftables script into the namespace's own ruleset."""
        _run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input_text=script)

    # -- processes --------------------------------------------------------------------------------------

    def run(self, ns: str, argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside ``ns`` (bounded by ``timeout``)."""
        return _run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check)

    def popen(self, ns: str, argv: Sequence[str]) -> subprocess.Popen[str]:
        """Start a long-running process inside ``ns``; ``close()`` stops it. ``ip netns exec`` execs the command,
        so the Popen's pid is the process itself."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def spawn(self, ns: str, argv: Sequence[str], log: str | os.PathLike[str]) -> subprocess.Popen[bytes]:
        """Start a daemon inside ``ns`` in a session of its own, stdout and stderr to ``log``: it outlives this
        process (``pqproxy lab up``); ``close()`` or ``kill_all()`` stops it with every other process in ``ns``.
        Its environment carries ``PQPROXY_LAB=<prefix>``, so that it can be found again (``lab_processes``)."""
        with open(log, "ab") as out:
            return subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, LAB_ENV: self.prefix})

    # -- teardown ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop our processes (SIGTERM, then SIGKILL after a bounded wait), then every other process still in
        our namespaces (daemons, their children), and delete the namespaces."""
        for proc in self.procs:
            stop_process(proc, STOP_TIMEOUT)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self.procs.clear()
        for name in self.namespaces:
            kill_all(name)
        names = list(reversed(self.namespaces))
        self.namespaces.clear()
        delete_all(names)

    def existing(self) -> list[str]:
        """Our namespaces that still exist (for teardown checks)."""
        return existing(self.prefix)


def existing(prefix: str) -> list[str]:
    """Namespaces named ``<prefix>-<role>`` that exist now."""
    listed = [line.split()[0] for line in _run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()]
    return [name for name in listed if name.startswith(prefix + "-")]


def lab_processes(prefix: str) -> list[int]:
    """Processes started by ``Lab.spawn`` for the lab ``prefix`` that are still alive, wherever they are."""
    marker = f"{LAB_ENV}={prefix}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def delete_all(names: Sequence[str]) -> None:
    """``ip netns del`` each namespace (after its processes are gone); NetnsError naming those that failed."""
    errors = []
    for name in names:
        done = _run(["ip", "netns", "del", name], check=False)
        if done.returncode != 0:
            errors.append(f"{name}: {done.stderr.strip()}")
    if errors:
        raise NetnsError(f"could not delete namespaces: {'; '.join(errors)}")


def pids_in(ns: str) -> list[int]:
    """Every process whose network namespace is ``ns`` (``ip netns pids``); [] if it does not exist."""
    done = _run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()] if done.returncode == 0 else []


def kill_all(ns: str, timeout: float = STOP_TIMEOUT) -> list[int]:
    """SIGTERM every process in ``ns``, SIGKILL what is left after ``timeout``; returns the pids that were
    there. A namespace is not gone while a process is in it, even once ``ip netns del`` unnamed it."""
    first = pids_in(ns)
    left = _signal_and_wait(ns, first, signal.SIGTERM, timeout)
    _signal_and_wait(ns, left, signal.SIGKILL, timeout)
    return first


def _signal_and_wait(ns: str, pids: list[int], sig: signal.Signals, timeout: float) -> list[int]:
    """Send ``sig`` to ``pids``, then wait (bounded) until ``ns`` is empty; returns who is still in it."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while (left := pids_in(ns)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@dataclass(frozen=True)
class Chain:
    """client -- router1 -- router2 -- server, one /24 per link; ``*_addr`` are host addresses (no prefix)."""

    client: str
    router1: str
    router2: str
    server: str
    client_addr: str = "198.18.1.1"
    router1_client_side: str = "198.18.1.2"
    router1_server_side: str = "198.18.2.1"
    router2_client_side: str = "198.18.2.2"
    router2_server_side: str = "198.18.3.1"
    server_addr: str = "198.18.3.2"


def chain(lab: Lab, *, server_mtu: int | None = None) -> Chain:
    """Build client -- router1 -- router2 -- server in ``lab``. ``server_mtu`` sets the MTU of the router2--server
    link (both ends), e.g. 1000 to make router2 the hop where full-size segments cannot pass."""
    path = Chain(lab.ns("client"), lab.ns("router1"), lab.ns("router2"), lab.ns("server"))
    lab.link(path.client, "c0", f"{path.client_addr}/24", path.router1, "r1a", f"{path.router1_client_side}/24")
    lab.link(path.router1, "r1b", f"{path.router1_server_side}/24", path.router2, "r2a",
             f"{path.router2_client_side}/24")
    lab.link(path.router2, "r2b", f"{path.router2_server_side}/24", path.server, "s0", f"{path.server_addr}/24",
             mtu=server_mtu)
    lab.route(path.client, "default", path.router1_client_side)
    lab.route(path.router1, "198.18.3.0/24", path.router2_client_side)
    lab.route(path.router2, "198.18.1.0/24", path.router1_server_side)
    lab.route(path.server, "default", path.router2_server_side)
    lab.forward(path.router1)
    lab.forward(path.router2)
    return path
