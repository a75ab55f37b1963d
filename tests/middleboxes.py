"""Real middleboxes on loopback for the probe suite's tests: HAProxy 2.6 and nginx 1.22 routing on SNI.

Each box routes the name ``good.test`` to one TLS backend and everything else to a *default* backend
with another certificate, the way SNI routers are deployed. A box that loses the SNI therefore answers
with the wrong certificate, which is exactly what the probe must notice. The configurations are
``pqproxy.lab.gear``'s, the same that ``pqproxy lab`` puts on its middlebox hop.

- ``haproxy_sni_router(inspect=False)``: ``use_backend ... if { req.ssl_sni ... }`` and no
  ``tcp-request content`` rule: HAProxy decides on whatever bytes it has when the stream starts.
- ``haproxy_sni_router(inspect=True)``: the documented recipe, ``tcp-request inspect-delay`` plus
  ``tcp-request content accept if { req.ssl_hello_type 1 }``: it waits for the hello, but
  ``req.ssl_sni`` still reads only the first record.
- ``nginx_sni_router()``: ``ssl_preread on`` with a ``map $ssl_preread_server_name``: reassembles.

Backends are ``pqproxy server`` processes (hybrid key exchange), each with its own dev PKI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from pqproxy.certs import write_dev_pki
from pqproxy.lab import gear
from tests.procs import free_port, stop_process, wait_listening
from tests.sidecar_kit import Backend, Sidecar, server_args

HOST = "127.0.0.1"
GOOD_NAME = gear.GOOD_NAME
STEP = 15.0


def require_binary(name: str, hint: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if os.access(p, os.X_OK)), None)
    if found:
        return found
    message = f"{name} not installed ({hint}): the probe suite's middlebox tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def leaf_sha256(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    from cryptography.hazmat.primitives.serialization import Encoding

    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@dataclass
class TLSBackend:
    sidecar: Sidecar
    upstream: Backend
    certificate_sha256: str
    pki: dict[str, Path]

    @property
    def port(self) -> int:
        return self.sidecar.port


@contextmanager
def tls_backend(work: Path, name: str) -> Iterator[TLSBackend]:
    # The default backend's certificate does not cover good.test: a misrouted client sees the wrong name.
    names = (GOOD_NAME, "localhost", HOST) if name == "good" else (f"{name}.test",)
    pki = write_dev_pki(work / f"pki-{name}", alg="ecdsa", names=names)
    upstream = Backend("echo")
    sidecar = Sidecar("server", server_args(pki, upstream.address), admin=False)
    try:
        yield TLSBackend(sidecar, upstream, leaf_sha256(pki["server"]), pki)
    finally:
        sidecar.stop(check=False)
        upstream.close()


@dataclass
class Router:
    port: int
    good: TLSBackend  # where good.test belongs
    default: TLSBackend  # where a box that lost the SNI sends you
    log: Path




@contextmanager
def _run(argv: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_listening(port, proc, log, timeout=STEP)
        yield
    finally:
        stop_process(proc)


@contextmanager
def haproxy_sni_router(work: Path, *, inspect: bool, port: int | None = None) -> Iterator[Router]:
    binary = require_binary("haproxy", "apt-get install haproxy")
    work.mkdir(parents=True, exist_ok=True)
    with tls_backend(work, "good") as good, tls_backend(work, "default") as default:
        port = port or free_port()
        config = work / f"haproxy-{'inspect' if inspect else 'plain'}.cfg"
        config.write_text(gear.haproxy_sni_router(listen=f"{HOST}:{port}", good=f"{HOST}:{good.port}",
                                                  default=f"{HOST}:{default.port}", inspect=inspect))
        check = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=STEP)
        assert check.returncode == 0, check.stdout + check.stderr
        log = config.with_suffix(".log")
        with _run([binary, "-db", "-f", str(config)], port, log):
            yield Router(port, good, default, log)


NGINX_STREAM_MODULE = gear.NGINX_STREAM_MODULE


@contextmanager
def nginx_sni_router(work: Path, port: int | None = None) -> Iterator[Router]:
    binary = require_binary("nginx", "apt-get install nginx libnginx-mod-stream")
    if not os.path.exists(NGINX_STREAM_MODULE):
        require_binary("/nonexistent/ngx_stream_module", "apt-get install libnginx-mod-stream")
    work.mkdir(parents=True, exist_ok=True)
    with tls_backend(work, "good") as good, tls_backend(work, "default") as default:
        port = port or free_port()
        prefix = work / "nginx"
        (prefix / "logs").mkdir(parents=True, exist_ok=True)
        config = prefix / "nginx.conf"
        config.write_text(gear.nginx_sni_router(prefix=prefix, listen=f"{HOST}:{port}", good=f"{HOST}:{good.port}",
                                                default=f"{HOST}:{default.port}"))
        argv = [binary, "-p", str(prefix), "-c", str(config)]
        check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=STEP)
        assert check.returncode == 0, check.stdout + check.stderr
        log = prefix / "logs" / "error.log"
        with _run(argv, port, prefix / "stdout.log"):
            yield Router(port, good, default, log)


@dataclass
class SquidProxy:
    port: int  # the HTTP proxy: CONNECT through it
    backend: TLSBackend  # the TLS server behind it (a pqproxy server for good.test)
    access_log: Path  # one line a tunnel: client, method, URL, the SNI Squid peeked, its bump mode


@contextmanager
def squid_peek_splice(work: Path) -> Iterator[SquidProxy]:
    """Squid 5.7 (squid-openssl) as a TLS-inspecting forward proxy: ``ssl_bump peek`` at step 1 reads the
    ClientHello (SNI), then ``splice`` passes the connection through untouched. Squid refuses to run as
    root, so its files live in a directory its ``proxy`` user can reach, removed afterwards."""
    import tempfile

    binary = require_binary("squid", "apt-get install squid-openssl")
    version = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=STEP).stdout
    if "--with-openssl" not in version:
        require_binary("/nonexistent/squid-openssl", "apt-get install squid-openssl (Debian's squid has no ssl_bump)")
    work.mkdir(parents=True, exist_ok=True)
    with tls_backend(work, "good") as backend:
        home = Path(tempfile.mkdtemp(prefix="pqproxy-squid-"))
        try:
            home.chmod(0o777)
            pki = write_dev_pki(home / "pki", alg="ecdsa", names=("squid.test",))
            combined = home / "squid.pem"
            combined.write_bytes(pki["server"].read_bytes() + pki["server_key"].read_bytes())
            for path in (home / "pki", combined, *sorted((home / "pki").iterdir())):
                path.chmod(0o755 if path.is_dir() else 0o644)
            port = free_port()
            config = home / "squid.conf"
            config.write_text(gear.squid_peek_splice(home=home, listen=f"{HOST}:{port}", tls_cert=combined))
            # A service name of our own: Squid names its shared memory after it, so instances do not collide.
            service = ["-n", f"pqsquid{port}"]
            check = subprocess.run([binary, *service, "-k", "parse", "-f", str(config)], capture_output=True,
                                   text=True, timeout=STEP)
            assert check.returncode == 0, check.stdout + check.stderr
            with _run([binary, *service, "-N", "-f", str(config)], port, home / "stdout.log"):
                yield SquidProxy(port, backend, home / "access.log")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{(home / 'cache.log').read_text(errors='replace')[-3000:]}") from None
        finally:
            shutil.rmtree(home, ignore_errors=True)
