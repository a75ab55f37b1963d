"""``pqproxy lab up|down|status``: bring the lab up, tear it down, say how it is.

The lab outlives the ``up`` command, so what it is made of is written to ``state.json`` in its directory
(``/run/pqproxy-lab/NAME`` by default): the namespaces and the services' pids. ``down`` does not trust that
file alone: it kills every process in every namespace named ``NAME-*`` and deletes them, so a lab whose
``up`` was killed half-way, or whose state file is gone, is still cleaned up. ``up`` cleans up after itself
when it fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import netns, services, topology
from .gear import find_binary, missing_gear

DEFAULT_NAME = "pqlab"
STATE_ROOT = Path("/run/pqproxy-lab")
MAX_NAME = 8  # namespace names are NAME-middlebox; keep them short and shell-safe


class LabError(RuntimeError):
    """The lab cannot be built or used here; the message says why and what to do."""


@dataclass
class LabState:
    name: str
    directory: str
    namespaces: list[str]
    pids: dict[str, int]
    roles: dict[str, str]  # service -> the namespace role it runs in
    unavailable: dict[str, str] = field(default_factory=dict)
    started: float = 0.0

    @property
    def ns(self) -> topology.Namespaces:
        return topology.Namespaces.named(self.name)


def state_dir(name: str, directory: Path | None = None) -> Path:
    return Path(directory) if directory is not None else STATE_ROOT / name


def check_name(name: str) -> None:
    if not (name.isascii() and name.isalnum() and name[:1].isalpha() and len(name) <= MAX_NAME):
        raise LabError(f"lab name {name!r}: up to {MAX_NAME} letters and digits, starting with a letter")


def preflight() -> None:
    """Root and the tools every lab needs; each missing piece in words."""
    if os.geteuid() != 0:
        raise LabError("pqproxy lab needs root: it creates network namespaces, veth links and firewall rules "
                       "(run it with sudo)")
    for tool in ("ip", "nft", "ss"):
        if find_binary(tool) is None:
            raise LabError(f"pqproxy lab needs {tool}: {missing_gear(tool) or 'apt-get install iproute2'}")


def up(name: str = DEFAULT_NAME, directory: Path | None = None) -> LabState:
    """Build the topology and start every service. On any failure (or Ctrl-C) nothing is left behind."""
    check_name(name)
    preflight()
    if netns.existing(name):
        raise LabError(f"lab {name!r} is already up (namespaces {', '.join(netns.existing(name))}); "
                       f"pqproxy lab down --name {name}")
    work = state_dir(name, directory).absolute()
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o755)  # Squid, as its proxy user, must reach its own directory inside
    closed = next((p for p in work.parents if not os.stat(p).st_mode & 0o001), None)
    if closed is not None:
        shutil.rmtree(work, ignore_errors=True)
        raise LabError(f"{closed} is not searchable by other users, and Squid (which runs as its own user) must "
                       f"reach the lab's directory: choose another --dir, or leave it out (default {STATE_ROOT})")
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    lab = netns.Lab(prefix=name)
    try:
        ns = topology.build(lab, early_verdict_port=services.EARLY_VERDICT)
        planned = services.plan(work, ns)
        pids = services.start(lab, ns, planned, logs)
        state = LabState(name, str(work), list(lab.namespaces), pids, {s.name: s.role for s in planned},
                         {s.name: s.unavailable for s in planned if s.unavailable}, time.time())
        (work / "state.json").write_text(json.dumps(asdict(state), indent=1))
        return state
    except netns.NetnsError as exc:
        _abandon(lab, work)
        raise LabError(f"building the lab failed: {exc}") from None
    except services.ServiceError as exc:
        _abandon(lab, work, keep_logs=True)
        raise LabError(f"starting the lab failed: {exc} (logs kept in {logs})") from None
    except BaseException:
        _abandon(lab, work)
        raise


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Ctrl-C ignored for the block: a clean-up is bounded, and a second Ctrl-C must not cut it short."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _abandon(lab: netns.Lab, work: Path, keep_logs: bool = False) -> None:
    with uninterruptible():
        try:
            lab.close()
        finally:
            if not keep_logs:
                shutil.rmtree(work, ignore_errors=True)


def load(name: str = DEFAULT_NAME, directory: Path | None = None) -> LabState | None:
    """The state of a lab that is up (its namespaces exist and its state file reads), else None."""
    path = state_dir(name, directory) / "state.json"
    try:
        data = json.loads(path.read_text())
        state = LabState(**data)
    except (OSError, ValueError, TypeError):
        return None
    return state if netns.existing(name) else None


def down(name: str = DEFAULT_NAME, directory: Path | None = None) -> list[str]:
    """Kill every process in the lab's namespaces, delete them and the lab's directory; returns what was
    removed (namespaces). Safe to call when nothing is up."""
    check_name(name)
    preflight()
    removed = netns.existing(name)
    for ns in removed:
        netns.kill_all(ns)
    for pid in netns.lab_processes(name):  # one that left its namespace, or outlived it
        os.kill(pid, signal.SIGKILL)
    shutil.rmtree(state_dir(name, directory), ignore_errors=True)
    try:
        netns.delete_all(removed)
    except netns.NetnsError as exc:
        raise LabError(str(exc)) from None
    return removed


@dataclass
class ServiceStatus:
    name: str
    namespace: str
    pid: int | None
    alive: bool
    note: str = ""


def status(name: str = DEFAULT_NAME, directory: Path | None = None) -> tuple[LabState | None, list[ServiceStatus]]:
    preflight()
    state = load(name, directory)
    if state is None:
        return None, []
    rows = []
    for service, pid in state.pids.items():
        alive = _alive(pid)
        rows.append(ServiceStatus(service, getattr(state.ns, state.roles[service]), pid, alive,
                                  "" if alive else "not running"))
    for service, why in state.unavailable.items():
        rows.append(ServiceStatus(service, getattr(state.ns, state.roles[service]), None, False, why))
    return state, rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
