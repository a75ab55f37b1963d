"""A real browser as a TLS client: headless Chromium (Debian's package, ``scripts/install-system.sh``).

Chromium trusts the test's development certificate through ``--ignore-certificate-errors-spki-list`` (the
base64 SHA-256 of the certificate's SubjectPublicKeyInfo), so nothing is added to an NSS database, and
each run gets a fresh profile. Chromium sends no SNI for an IP literal, so tests load a name such as
``https://pqproxy.test:PORT/`` and map it to loopback with ``resolve={"pqproxy.test": "127.0.0.1"}``
(``--host-resolver-rules``): no DNS is asked and the ClientHello carries the name.

Chromium 156 offers X25519MLKEM768 (with an X25519MLKEM768 key share) by default: no flag is needed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

INSTALL_HINT = "install it with: sudo scripts/install-system.sh (or: make system)"

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root in a container there is no user namespace sandbox to use
    "--disable-gpu",
    "--disable-quic",  # HTTP/3 would bypass a TCP proxy altogether
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_binary() -> Path:
    """The Chromium executable ($PQPROXY_CHROMIUM, else chromium or chromium-browser on PATH).

    Missing: fails the test in CI (CI=true), where install-system.sh should have installed it; skips it
    elsewhere, saying how to install it.
    """
    candidates = [os.environ.get("PQPROXY_CHROMIUM", ""), "chromium", "chromium-browser"]
    for name in filter(None, candidates):
        found = shutil.which(name)
        if found:
            return Path(found)
    message = f"Chromium not found ({', '.join(filter(None, candidates))}); {INSTALL_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " [CI=true: the browser test may not be skipped]")
    pytest.skip(message)


def spki_sha256_b64(cert_pem_path: str | os.PathLike[str]) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo DER)) of the first certificate in a PEM file: Chromium's pin format."""
    cert = x509.load_pem_x509_certificate(Path(cert_pem_path).read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


class ChromiumError(AssertionError):
    pass


def fetch_with_chromium(
    url: str,
    *,
    spki_hashes: list[str],
    timeout: float = 60,
    resolve: Mapping[str, str] | None = None,
    extra_flags: tuple[str, ...] = (),
) -> str:
    """Load ``url`` in headless Chromium and return the DOM after scripts ran (``--dump-dom``).

    ``spki_hashes``: certificates to accept despite an unknown issuer (see ``spki_sha256_b64``).
    ``resolve``: host name -> IP address, instead of DNS. The browser is killed (its whole process group)
    when it returns, fails or runs past ``timeout`` seconds; a failure raises ``ChromiumError`` with the
    tail of Chromium's stderr. A page that did not load (a certificate error, say) gives an empty or
    near-empty DOM, not an exception: the caller asserts on the content.
    """
    binary = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="pqproxy-chromium-") as tmp:
        profile = Path(tmp, "profile")
        profile.mkdir()
        args = [str(binary), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra_flags]
        if spki_hashes:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_hashes))
        if resolve:
            rules = ", ".join(f"MAP {host} {address}" for host, address in resolve.items())
            args.append(f"--host-resolver-rules={rules}")
        args += ["--dump-dom", url]
        # No writes to the real home (crash reports, caches) or /tmp (its singleton socket, left behind by a kill)
        env = {**os.environ, "HOME": tmp, "TMPDIR": tmp}
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        with open(Path(tmp, "stderr.log"), "w+b") as stderr:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, start_new_session=True)
            try:
                try:
                    out, _ = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    raise ChromiumError(f"Chromium did not finish within {timeout}s loading {url}\n"
                                        + _tail(stderr)) from None
                if proc.returncode != 0:
                    raise ChromiumError(f"Chromium exited with {proc.returncode} loading {url}\n" + _tail(stderr))
                return out.decode("utf-8", "replace")
            finally:
                _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Chromium forks zygote, renderer and utility processes: end the whole session it leads."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not get ignored
        pass
    if proc.stdout is not None:
        proc.stdout.close()


def _tail(stderr: object, limit: int = 4000) -> str:
    assert hasattr(stderr, "seek") and hasattr(stderr, "read")
    stderr.seek(0)
    text = stderr.read().decode("utf-8", "replace")
    lines = [line for line in text.splitlines() if "dbus" not in line.lower()]  # no D-Bus here: noise
    return "chromium stderr (last lines):\n" + "\n".join(lines)[-limit:]
