"""The KME simulator over real HTTPS with mutual TLS, through pqproxy's own ETSI GS QKD 014 client.

Both SAEs get the same key for a key_ID, once; an SAE may take only keys meant for it; no certificate or a
foreign CA's is refused at the TLS layer; an empty pool is 503; the link's physics shows in the status
(QBER, key rate, state), and an eavesdropper drives the QBER over the abort threshold and the link down,
and back up after it leaves. schemathesis finds no server error in the served OpenAPI description. The
client copes with a KME that answers garbage, stalls, or is not there, within its budget.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from pqproxy.certs import write_kme_pki
from pqproxy.qkd.client import ETSI014Client, KMEError, KMESettings
from pqproxy.qkd.keysource import ETSI014KeySource
from pqproxy.qkd.link import Link, LinkParameters, steady_state
from tests.procs import free_port
from tests.qkd_kit import KME


@pytest.fixture(scope="module")
def kme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KME]:
    with KME(tmp_path_factory.mktemp("kme") / "pki", ("alice", "bob", "carol"), "--recovery-s", "0.5") as k:
        yield k


def run(coro_fn, *args):  # type: ignore[no-untyped-def]
    return trio.run(coro_fn, *args)


def test_both_saes_get_the_same_key_once(kme: KME) -> None:
    async def main() -> None:
        alice, bob = ETSI014Client(kme.settings("alice")), ETSI014Client(kme.settings("bob"))
        try:
            (sent,) = (await alice.enc_keys("bob")).keys
            (got,) = (await bob.dec_keys("alice", [sent.key_ID])).keys
            assert got.key_ID == sent.key_ID and got.material() == sent.material()
            assert len(sent.material()) == 32  # the KME's 256-bit keys
            with pytest.raises(KMEError) as again:
                await bob.dec_keys("alice", [sent.key_ID])
            assert again.value.kind == "bad_request" and again.value.status == 400
            assert "already delivered" in str(again.value)
            two = await alice.enc_keys("bob", number=2, size=512)
            assert len({k.key_ID for k in two.keys}) == 2 and all(len(k.material()) == 64 for k in two.keys)
        finally:
            await alice.aclose()
            await bob.aclose()

    run(main)


def test_an_sae_takes_only_keys_meant_for_it(kme: KME, tmp_path: Path) -> None:
    async def main() -> None:
        alice, carol = ETSI014Client(kme.settings("alice")), ETSI014Client(kme.settings("carol"))
        try:
            (sent,) = (await alice.enc_keys("bob")).keys
            with pytest.raises(KMEError) as stolen:
                await carol.dec_keys("alice", [sent.key_ID])
            assert stolen.value.kind == "unauthorized" and stolen.value.status == 401
            # A certificate of the KME's own CA for a name that is no SAE of this KME: 401 as well.
            dave = ETSI014Client(KMESettings(kme.url, *_issue(kme.out, "dave", tmp_path), str(kme.out / "ca.pem")))
            with pytest.raises(KMEError) as unknown:
                await dave.status("alice")
            assert unknown.value.kind == "unauthorized" and unknown.value.status == 401
            await dave.aclose()
            stranger = write_kme_pki(tmp_path / "other", ["dave"])  # another CA: the TLS layer refuses
            foreign = ETSI014Client(KMESettings(kme.url, str(stranger["dave"]), str(stranger["dave_key"]),
                                                str(kme.out / "ca.pem"), retries=0))
            with pytest.raises(KMEError) as refused:
                await foreign.status("alice")
            assert refused.value.kind in ("tls", "connect", "http"), refused.value
            await foreign.aclose()
        finally:
            await alice.aclose()
            await carol.aclose()

    run(main)


def _issue(pki: Path, name: str, out: Path) -> tuple[str, str]:
    """A client certificate for ``name`` from the KME's own CA."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from pqproxy.certs import build_leaf_certificate, generate_key

    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    key = generate_key("ecdsa")
    now = datetime.now(UTC)
    cert = build_leaf_certificate(key.public_key(), ca, ca_key,  # type: ignore[arg-type]
                                  common_name=name, names=[], purpose=ExtendedKeyUsageOID.CLIENT_AUTH,
                                  not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=1))
    (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return str(out / f"{name}.pem"), str(out / f"{name}.key")


def test_no_client_certificate_is_refused(kme: KME) -> None:
    context = ssl.create_default_context(cafile=str(kme.out / "ca.pem"))
    import socket

    def attempt() -> None:
        with socket.create_connection(("127.0.0.1", kme.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /api/v1/keys/bob/status HTTP/1.1\r\nHost: x\r\n\r\n")
            if not tls.recv(100):  # TLS 1.3: the refusal arrives after the client's handshake ends
                raise ConnectionError("closed without an answer")

    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        attempt()


def test_status_shows_the_link(kme: KME) -> None:
    async def main() -> None:
        source = ETSI014KeySource("alice", kme.settings("alice"))
        try:
            link = await source.link("bob")
        finally:
            await source.aclose()
        assert link is not None
        assert link["link_state"] == "up"
        assert 0.01 < link["qber"] < 0.02  # misalignment 1.5% dominates at 20 km
        expected_rate = steady_state(LinkParameters())[1] * 100e6
        assert link["key_rate_bps"] == pytest.approx(expected_rate, rel=1e-3)
        assert link["stored_key_count"] > 0

    run(main)


def test_an_eavesdropper_aborts_the_link_and_it_recovers(tmp_path: Path) -> None:
    with KME(tmp_path / "pki", ("alice", "bob"), "--recovery-s", "0.5", "--max-key-count", "2",
             "--initial-keys", "0", "--pulse-rate", "1e6") as kme:
        async def main() -> None:
            alice = ETSI014Client(kme.settings("alice", retries=0))
            try:
                await trio.sleep(0.2)  # 4 kbit/s: enough for a 256-bit key
                await alice.enc_keys("bob")
                seen = kme.control("/eavesdropper", {"fraction": 0.5})
                assert seen["qber"] > 0.11 and seen["link_state"] == "aborted" and seen["key_rate_bps"] == 0
                status = await alice.status("bob")
                assert status.status_extension and status.status_extension["link_state"] == "aborted"
                await trio.sleep(0.3)
                with pytest.raises(KMEError) as empty:  # no key was made while Eve listened
                    for _ in range(3):
                        await alice.enc_keys("bob")
                assert empty.value.kind == "unavailable" and empty.value.status == 503
                assert "no keys available" in str(empty.value)
                back = kme.control("/eavesdropper", {"fraction": 0.0})
                assert back["link_state"] == "recovering" and back["disturbances"] == 1
                await trio.sleep(0.8)
                assert kme.control("/link")["link_state"] == "up"
                await trio.sleep(0.2)
                await alice.enc_keys("bob")  # keys again
            finally:
                await alice.aclose()

        run(main)


def test_bad_requests_get_400(kme: KME) -> None:
    async def main() -> None:
        alice = ETSI014Client(kme.settings("alice"))
        try:
            for call in (alice.enc_keys("nobody"), alice.enc_keys("alice"), alice.enc_keys("bob", size=12)):
                with pytest.raises(KMEError) as bad:
                    await call
                assert bad.value.kind == "bad_request", bad.value
        finally:
            await alice.aclose()

    run(main)


def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    """Fuzzing against a KME whose pools do not run dry (503 "no keys available" is its documented answer
    to exhaustion, which schemathesis would count as a server error): a large pool and a fast link."""
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary is not None, "schemathesis is a dev dependency (pip install -e .[dev])"
    with KME(tmp_path / "pki", ("alice", "bob", "carol"), "--max-key-count", "20000", "--pulse-rate", "1e10") as kme:
        done = _schemathesis(binary, kme, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    import re

    counts = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert counts is not None, done.stdout[-2000:]
    assert int(counts[1]) == int(counts[2]) >= 100, counts[0]


def _schemathesis(binary: str, kme: KME, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "run", f"{kme.url}/api/v1/openapi.json", "--checks", "not_a_server_error",
         "--tls-verify", str(kme.out / "ca.pem"), "--request-cert", str(kme.out / "alice.pem"),
         "--request-cert-key", str(kme.out / "alice.key"), "--max-examples", "100", "--workers", "2",
         "--phases", "examples,fuzzing"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_the_link_model_follows_its_formulas() -> None:
    p = LinkParameters()
    rates = [steady_state(LinkParameters(length_km=km))[1] for km in (0, 50, 100, 150, 250)]
    assert rates == sorted(rates, reverse=True) and rates[-1] == 0.0  # longer fibre, less key, then none
    assert steady_state(p, 0.5)[0] > p.abort_qber > steady_state(p, 0.0)[0]
    # Intercept-resend on every pulse: 25% more errors in the sifted key (E' = E + 1/4 (1 - 2E)).
    e = steady_state(p)[0]
    assert steady_state(p, 1.0)[0] == pytest.approx(e + 0.25 * (1 - 2 * e))
    link = Link(p, now=0.0)
    assert link.accrue(10.0) == pytest.approx(steady_state(p)[1] * p.pulse_rate_hz * 10)
    with pytest.raises(ValueError):
        LinkParameters(detector_efficiency=0).check()


class _Misbehaving:
    """A TLS server with the KME's certificate that answers garbage, or accepts and never answers."""

    def __init__(self, kme_pki: Path, mode: str) -> None:
        self.mode = mode
        self.port = free_port()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(kme_pki / "kme.pem"), str(kme_pki / "kme.key"))

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async def handle(tcp: trio.SocketStream) -> None:
            stream = trio.SSLStream(tcp, self.context, server_side=True)
            try:
                await stream.do_handshake()
                await stream.receive_some(4096)
                if self.mode == "garbage":
                    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nnot json!")
                    await stream.receive_some(4096)
                else:
                    await trio.sleep_forever()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        await trio.serve_tcp(handle, self.port, host="127.0.0.1", task_status=task_status)


@pytest.mark.parametrize("mode, kind", [("garbage", "bad_response"), ("stall", "timeout")])
def test_a_kme_that_lies_or_stalls_is_an_error_in_bounded_time(kme: KME, mode: str, kind: str) -> None:
    async def main() -> None:
        bad = _Misbehaving(kme.out, mode)
        async with trio.open_nursery() as nursery:
            await nursery.start(bad.serve)
            settings = KMESettings(f"https://127.0.0.1:{bad.port}", str(kme.out / "alice.pem"),
                                   str(kme.out / "alice.key"), str(kme.out / "ca.pem"), timeout=0.5, retries=2,
                                   budget=1.2)
            client = ETSI014Client(settings)
            with pytest.raises(KMEError) as failed:  # (a hang would be pytest-timeout's failure)
                await client.enc_keys("bob")
            assert failed.value.kind == kind, failed.value
            await client.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def test_a_kme_that_is_down_is_a_connect_error(kme: KME) -> None:
    async def main() -> None:
        settings = KMESettings(f"https://127.0.0.1:{free_port()}", str(kme.out / "alice.pem"),
                               str(kme.out / "alice.key"), str(kme.out / "ca.pem"), retries=1)
        client = ETSI014Client(settings)
        with pytest.raises(KMEError) as failed:
            await client.enc_keys("bob")
        assert failed.value.kind == "connect"
        await client.aclose()

    run(main)
