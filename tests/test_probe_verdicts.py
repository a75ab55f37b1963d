"""The probe's verdicts against real gear on loopback match the truth.

- HAProxy 2.6 routing on ``req.ssl_sni`` with no ``tcp-request content`` rule reads whatever the first
  segment brought: split hellos land on the default backend -> ``split-segments``.
- With ``inspect-delay`` and ``accept if { req.ssl_hello_type 1 }`` it waits for the hello but parses one
  record only -> ``multi-record`` and not ``split-segments``.
- nginx ``ssl_preread`` reassembles both -> no diagnosis; Node 26 directly -> no diagnosis.
- ``pqproxy server`` and Node 26 (OpenSSL 3.5) are rated ``pq-ready``, and their own logs confirm the
  hybrid group the probe reports.
- Bad targets get exit code 2 and a sentence, never a traceback.

The checks run through ``pqproxy probe`` as a user would (a subprocess, JSON report, exit code), except
where the test reads the in-process report for detail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from peers.node import NodeServer, node_binary

from pqproxy.certs import write_dev_pki
from pqproxy.probe.engine import Target
from pqproxy.probe.runner import RunOptions, run_suite
from pqproxy.probe.suite import load_suite
from tests.middleboxes import GOOD_NAME, haproxy_sni_router, nginx_sni_router, squid_peek_splice
from tests.procs import ScriptedServer, free_port
from tests.sidecar_kit import Backend, Sidecar, server_args

pytestmark = pytest.mark.interop
HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_pki(tmp_path_factory.mktemp("probe-pki"), alg="ecdsa", names=("localhost",))
RUN_TIMEOUT = 240


def probe_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "pqproxy", "probe", *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def run_default(port: int, server_name: str | None = GOOD_NAME, suite: str = "default") -> Any:
    loaded = load_suite(suite)
    report = trio.run(run_suite, [Target(HOST, port, server_name)], loaded, RunOptions())
    (target,) = report.targets
    return report, target


def ids(target: Any) -> list[str]:
    return [d.id for d in target.diagnoses]


# --- real middleboxes ------------------------------------------------------------------------------


def test_haproxy_without_content_rule_is_split_segments(tmp_path: Path) -> None:
    with haproxy_sni_router(tmp_path / "box", inspect=False) as box:
        out = tmp_path / "report.json"
        code, stdout, _ = probe_cli(f"{HOST}:{box.port}", "--sni", GOOD_NAME, "--json", str(out), cwd=tmp_path)
    assert code == 1, stdout
    report = json.loads(out.read_text())
    (target,) = report["targets"]
    found = [d["id"] for d in target["diagnoses"]]
    assert "split-segments" in found
    split = next(d for d in target["diagnoses"] if d["id"] == "split-segments")
    assert {"pq/split@600", "pq/one-write", "classical/split@100"} <= set(split["evidence"])
    results = {r["spec"]["id"]: r for r in target["results"]}
    # Differential: the unsplit control reached good.test's backend, the split hello did not.
    assert results["pq/one-write"]["verdict"] == "pass"
    assert results["pq/one-write"]["outcome"]["certificate_sha256"] == box.good.certificate_sha256
    assert results["pq/split@600"]["verdict"] == "fail"
    assert results["pq/split@600"]["outcome"]["certificate_sha256"] == box.default.certificate_sha256
    assert "another backend" in results["pq/split@600"]["reason"]
    assert "split-segments" in stdout


def test_haproxy_with_inspect_delay_is_multi_record_only(tmp_path: Path) -> None:
    with haproxy_sni_router(tmp_path / "box", inspect=True) as box:
        report, target = run_default(box.port)
    found = ids(target)
    assert "multi-record" in found
    assert "split-segments" not in found
    assert "tiny-first-segment" not in found
    by_id = {r.spec.id: r for r in target.results}
    assert by_id["pq/split@600"].verdict == "pass"
    assert by_id["pq/tiny-first@1"].verdict == "pass"
    assert by_id["pq/records@512"].verdict == "fail"
    assert by_id["pq/records@512"].outcome.certificate_sha256 == box.default.certificate_sha256
    assert report.exit_code() == 1


def test_nginx_ssl_preread_gets_no_diagnosis(tmp_path: Path) -> None:
    with nginx_sni_router(tmp_path / "box") as box:
        report, target = run_default(box.port)
    assert target.diagnoses == [], [d.summary for d in target.diagnoses]
    failing = [r.spec.id for r in target.results if r.verdict != "pass" and r.verdict != "skipped"]
    assert failing == []
    assert all(r.outcome.certificate_sha256 == box.good.certificate_sha256
               for r in target.results if r.outcome.certificate_sha256)
    assert report.exit_code() == 0


# --- servers directly: no diagnosis, readiness ------------------------------------------------------


def test_pqproxy_server_is_pq_ready_and_clean(paths: dict[str, Path], tmp_path: Path) -> None:
    upstream = Backend("echo")
    server = Sidecar("server", server_args(paths, upstream.address))
    try:
        out = tmp_path / "r.json"
        code, stdout, _ = probe_cli(f"{HOST}:{server.port}", "--sni", "localhost", "--json", str(out), cwd=tmp_path)
        records = server.connections()
    finally:
        server.stop(check=False)
        upstream.close()
    assert code == 0, stdout
    (target,) = json.loads(out.read_text())["targets"]
    assert target["diagnoses"] == []
    readiness = target["readiness"]
    assert readiness["verdict"] == "pq-ready"
    assert readiness["preferred_group"] == "X25519MLKEM768"
    assert readiness["hrr_to_hybrid"] is True
    assert {"X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024"} <= set(readiness["accepted_groups"])
    # What the server saw: its own connection log has the hybrid handshakes the probe reported.
    groups = {r.get("group") for r in records if r.get("result") == "ok"}
    assert "X25519MLKEM768" in groups and "MLKEM1024" in groups
    # The probe closes politely (close_notify, FIN, reads to the server's FIN): only the raw-packet
    # probes (two probes, two attempts, which end with RST by design) may leave a reset behind.
    resets = [r for r in records if r.get("result") == "peer_reset"]
    assert len(resets) <= 4, resets


def test_node26_is_pq_ready_and_clean(paths: dict[str, Path]) -> None:
    node_binary()
    config = {"cert": str(paths["server"]), "key": str(paths["server_key"])}
    with NodeServer(config) as node:
        report, target = run_default(node.port, "localhost")
        handshakes = node.events("handshake")
    assert target.diagnoses == [], [d.summary for d in target.diagnoses]
    assert target.readiness is not None and target.readiness.verdict == "pq-ready"
    assert target.readiness.preferred_group == "X25519MLKEM768"
    assert report.exit_code() == 0
    # Node's own tap saw the probe's Chrome-shaped hello and agreed on the hybrid group.
    seen = [h for h in handshakes if h.get("group") == "X25519MLKEM768"]
    assert seen, handshakes[:3]
    shares = [[s["group"] for s in h["clientHello"]["keyShares"]] for h in seen]
    assert any(s[-2:] == ["X25519MLKEM768", "X25519"] for s in shares), shares


# --- bad targets ---------------------------------------------------------------------------------------


@pytest.fixture
def bad_server(request: pytest.FixtureRequest) -> Iterator[ScriptedServer]:
    server = ScriptedServer(*request.param)
    try:
        yield server
    finally:
        server.close()


def test_closed_port_exits_2(tmp_path: Path) -> None:
    code, stdout, _ = probe_cli(f"{HOST}:{free_port()}", "--suite", "quick", "--json", str(tmp_path / "r.json"),
                                     cwd=tmp_path)
    assert code == 2
    assert "refused" in stdout
    (target,) = json.loads((tmp_path / "r.json").read_text())["targets"]
    assert target["reachable"] is False and "refused" in target["error"]


@pytest.mark.parametrize(
    ("bad_server", "words"),
    [
        ((b"HTTP/1.1 400 Bad Request\r\n\r\n",), "does not speak TLS"),
        ((bytes(range(256)) * 4,), "does not speak TLS"),
        ((b"\x16\x03\x03\xff\xff" + b"\x00" * 64,), "does not speak TLS"),
        ((None,), "no TLS answer"),
    ],
    indirect=["bad_server"],
    ids=["http", "garbage", "oversized-record", "silent-close"],
)
def test_bad_targets_exit_2_with_a_sentence(bad_server: ScriptedServer, words: str, tmp_path: Path) -> None:
    code, stdout, stderr = probe_cli(f"{HOST}:{bad_server.port}", "--suite", "quick", "--timeout", "2", cwd=tmp_path)
    assert code == 2, stdout + stderr
    assert words in stdout, stdout


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    for args in (["--suite", "nonexistent"], ["nohost:notaport"], [], ["--profile", "nope", "127.0.0.1:1"],
                 ["--check", "bogus", "127.0.0.1:1"]):
        code, stdout, stderr = probe_cli(*args, cwd=tmp_path)
        assert code == 2, (args, stdout, stderr)
        assert stderr.strip(), args


def test_squid_peek_is_multi_record_across_reads(tmp_path: Path) -> None:
    """Squid 5.7 ``ssl_bump peek`` through CONNECT: it reads a hello split across segments, and several
    records in one write, but closes when the records arrive in separate reads: Squid bug 5266 (fixed after
    5.7: "SslBump rejects ... a single TLS message split across two TLS records ... separated by a TCP I/O
    boundary"). The probe must say exactly that: multi-record, from the records-writes probe alone."""
    with squid_peek_splice(tmp_path / "squid") as squid:
        out = tmp_path / "r.json"
        code, stdout, _ = probe_cli(f"{HOST}:{squid.backend.port}", "--sni", GOOD_NAME, "--proxy",
                                    f"{HOST}:{squid.port}", "--json", str(out), cwd=tmp_path)
        log = squid.access_log.read_text()
    assert code == 1, stdout
    (target,) = json.loads(out.read_text())["targets"]
    assert [d["id"] for d in target["diagnoses"]] == ["multi-record"], stdout
    diagnosis = target["diagnoses"][0]
    assert diagnosis["details"] == {"records_across_reads_only": True}
    assert diagnosis["evidence"][0] == "pq/records-writes@512"
    results = {r["spec"]["id"]: r for r in target["results"]}
    assert results["pq/records-writes@512"]["outcome"]["kind"] == "fin"
    for fine in ("pq/records@512", "classical/records@64", "pq/split@600", "pq/tiny-first@1"):
        assert results[fine]["verdict"] == "pass", fine
        assert results[fine]["outcome"]["certificate_sha256"] == squid.backend.certificate_sha256
    assert results["pq/raw-segments@100"]["verdict"] == "skipped"  # raw packets cannot go through a proxy
    assert target["readiness"]["verdict"] == "pq-ready"
    # Squid's own log: it peeked the SNI and spliced the tunnels that worked, and never saw one in the others.
    tunnels = [line for line in log.splitlines() if " CONNECT " in line]
    assert any(f"sni={GOOD_NAME} bump=splice" in line for line in tunnels), log[-2000:]
    assert any("sni=- bump=peek" in line for line in tunnels), log[-2000:]
