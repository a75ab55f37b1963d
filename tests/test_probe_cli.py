"""``pqproxy probe`` as CI runs it: the output files, --pcap, --targets, and --baseline regressions.

Real gear on loopback: a ``pqproxy server`` and the HAProxy/nginx SNI routers of tests/middleboxes.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pqproxy.certs import write_dev_pki
from pqproxy.probe.pcap import read_client_hellos
from tests.middleboxes import GOOD_NAME, haproxy_sni_router, nginx_sni_router
from tests.procs import free_port
from tests.sidecar_kit import Backend, Sidecar, server_args

pytestmark = pytest.mark.interop
HOST = "127.0.0.1"
RUN_TIMEOUT = 240


def probe_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pqproxy", "probe", *args], capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, cwd=cwd, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_pcap_holds_every_probe_and_the_reports_agree(tmp_path: Path) -> None:
    if os.geteuid() != 0 and os.environ.get("CI") != "true":
        pytest.skip("--pcap runs tcpdump: needs root")
    paths = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("localhost",))
    upstream = Backend("echo")
    server = Sidecar("server", server_args(paths, upstream.address), admin=False)
    try:
        proc = probe_cli(f"{HOST}:{server.port}", "--sni", "localhost", "--suite", "quick",
                         "--pcap", str(tmp_path / "pcap"), "--json", str(tmp_path / "r.json"),
                         "--junit", str(tmp_path / "r.xml"), "--html", str(tmp_path / "r.html"), cwd=tmp_path)
    finally:
        server.stop(check=False)
        upstream.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    (target,) = report["targets"]
    (pcap,) = (tmp_path / "pcap").glob("*.pcap")
    hellos = {h.client.port: h for h in read_client_hellos(pcap)}
    # Every kernel-socket probe attempt is in the capture, under the port the report gives, with the size
    # the report gives, whatever shape it was sent in (split writes, several records).
    for result in target["results"]:
        for attempt in result["attempts"]:
            port = attempt["local_port"]
            assert port in hellos, (result["spec"]["id"], port, sorted(hellos))
            assert len(hellos[port].message) == result["hello_size"], result["spec"]["id"]
    split = next(r for r in target["results"] if r["spec"]["id"] == "pq/split@600")
    assert hellos[split["attempts"][0]["local_port"]].segments >= 2
    records = next(r for r in target["results"] if r["spec"]["id"] == "pq/records@512")
    assert hellos[records["attempts"][0]["local_port"]].records >= 2
    junit = ET.parse(tmp_path / "r.xml").getroot()
    cases = junit.findall(".//testcase")
    assert {c.get("name") for c in cases} >= {r["spec"]["id"] for r in target["results"]}
    assert not junit.findall(".//failure")
    html = (tmp_path / "r.html").read_text()
    assert "<svg" in html and "pq/split@600" in html


def test_baseline_fails_only_on_regressions(tmp_path: Path) -> None:
    port = free_port()
    target = f"{HOST}:{port}"
    common = ("--sni", GOOD_NAME, "--suite", "ci")
    with nginx_sni_router(tmp_path / "nginx", port=port):
        good = probe_cli(target, *common, "--json", str(tmp_path / "good.json"), cwd=tmp_path)
    assert good.returncode == 0, good.stdout
    with haproxy_sni_router(tmp_path / "haproxy", inspect=False, port=port):
        # The same address now has a box that breaks split hellos: against the good baseline, a regression.
        worse = probe_cli(target, *common, "--baseline", str(tmp_path / "good.json"),
                          "--json", str(tmp_path / "worse.json"), cwd=tmp_path)
        # Against its own report as baseline, nothing newly broke: exit 0 although the breakage remains.
        same = probe_cli(target, *common, "--baseline", str(tmp_path / "worse.json"), cwd=tmp_path)
    assert worse.returncode == 1, worse.stdout
    regressions = json.loads((tmp_path / "worse.json").read_text())["regressions"]
    assert any("pq/split@600" in r for r in regressions), regressions
    assert not any("pq/one-write" in r for r in regressions), regressions
    assert same.returncode == 0, same.stdout
    assert "split-segments" in same.stdout


def test_many_targets_from_a_file(tmp_path: Path) -> None:
    paths = write_dev_pki(tmp_path / "pki", alg="ecdsa", names=("localhost",))
    upstream = Backend("echo")
    servers = [Sidecar("server", server_args(paths, upstream.address), admin=False) for _ in range(3)]
    closed = free_port()
    try:
        listing = tmp_path / "targets.txt"
        listing.write_text("# fleet\n" + "".join(f"{HOST}:{s.port} localhost\n" for s in servers)
                           + f"{HOST}:{closed} localhost   # decommissioned\n")
        proc = probe_cli("--targets", str(listing), "--suite", "quick", "--concurrency", "2",
                         "--json", str(tmp_path / "r.json"), cwd=tmp_path)
    finally:
        for s in servers:
            s.stop(check=False)
        upstream.close()
    assert proc.returncode == 2, proc.stdout  # one target unreachable
    report = json.loads((tmp_path / "r.json").read_text())
    by_target = {t["target"]: t for t in report["targets"]}
    # Streamed (no terminal): written as each target finished; "index" is its place in the file.
    in_file_order = sorted(report["targets"], key=lambda t: t["index"])
    assert [t["target"] for t in in_file_order] == [f"{HOST}:{s.port}" for s in servers] + [f"{HOST}:{closed}"]
    assert [t["index"] for t in in_file_order] == [0, 1, 2, 3]
    assert all(by_target[f"{HOST}:{s.port}"]["reachable"] and not by_target[f"{HOST}:{s.port}"]["diagnoses"]
               for s in servers)
    assert by_target[f"{HOST}:{closed}"]["reachable"] is False
