"""Issue 20, part 2: the operator's KPIs, checked by a real Prometheus toolchain (Debian's ``prometheus`` package).

``promtool check rules`` and ``promtool test rules`` (an eavesdropper episode: ``deploy/monitoring/
pqproxy-rules.test.yml``); every query of the Grafana dashboard is valid PromQL (promtool checks each as a
recording rule); and a real ``prometheus`` scrapes a running QKD network (``pqproxy kme --topology``, a chain
A-B-C) and the two sidecars keying handshakes through it, loads the rules, and has every series the rules and the
dashboard name; an eavesdropper on A-B then shows in the series and makes QKDLinkAborted pending.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from pqproxy.certs import write_dev_pki
from tests.procs import free_port, require, stop_process
from tests.sidecar_kit import Backend, Sidecar, client_args, server_args
from tests.test_qkd_network import CHAIN, NetworkKME, keyed, roundtrip

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
RULES = MONITORING / "pqproxy-rules.yml"
DASHBOARD = MONITORING / "pqproxy-dashboard.json"
WAIT = 60.0  # seconds for Prometheus to scrape and evaluate (1 s scrapes; the rule groups run every 15 s)


def _tool(name: str) -> str:
    path = shutil.which(name)
    require(None if path else f"{name} is not installed (Debian package prometheus; make setup installs it)")
    assert path is not None
    return path


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    return exprs


def _recorded() -> set[str]:
    return {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}


def _names_used() -> set[str]:
    """Every raw metric the rules and the dashboard read (recording rules and ALERTS are not scraped)."""
    texts = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]] + _dashboard_exprs()
    return {m for text in texts for m in re.findall(r"\bpqproxy_[a-z0-9_]+", text)}


def test_rules_pass_promtool_check_and_the_eavesdropper_episode() -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "pqproxy-rules.test.yml"], cwd=MONITORING,
                          capture_output=True, text=True, timeout=120)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_every_dashboard_query_is_promql_over_the_rules(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    exprs = _dashboard_exprs()
    assert len(exprs) >= 10
    as_rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:q{i}", "expr": e}
                                                           for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard-rules.yml").write_text(yaml.safe_dump(as_rules))
    check = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard-rules.yml")], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    used = {m for e in exprs for m in re.findall(r"\bpqproxy:[a-z0-9_:]+", e)}
    assert used <= _recorded(), used - _recorded()  # the dashboard reads only recording rules that exist


class Prometheus:
    def __init__(self, work: Path, targets: dict[str, list[str]]) -> None:
        self.port = free_port()
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(RULES)],
                  "scrape_configs": [{"job_name": job, "static_configs": [{"targets": t}]}
                                     for job, t in targets.items()]}
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (work / "prometheus.log").open("w")
        self.proc = subprocess.Popen([_tool("prometheus"), f"--config.file={work / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=work)

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return body["data"]

    def wait(self, what: str, done: Any) -> Any:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                value = done()
                if value:
                    return value
            except OSError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"prometheus: {what} within {WAIT:g}s"
            time.sleep(0.5)

    def query(self, expr: str) -> list[Any]:
        return list(self.api("query", query=expr)["result"])

    def stop(self) -> None:
        stop_process(self.proc, timeout=15)
        self.log.close()


def test_a_real_prometheus_scrapes_the_network_and_the_sidecars(tmp_path: Path) -> None:
    pki = write_dev_pki(tmp_path / "tls", alg="ecdsa")
    upstream = Backend("echo")
    kme = NetworkKME(tmp_path, CHAIN)
    server = client = prometheus = None
    try:
        server = Sidecar("server", server_args(pki, upstream.address, *kme.qkd("carol", "C", "require")))
        client = Sidecar("client", client_args(pki, server.port, *kme.qkd("alice", "A", "require", "carol")))
        for i in range(3):
            assert roundtrip(client.port, b"keyed %d" % i) == b"keyed %d" % i
        assert all(r["qkd"] == "keyed" for r in keyed(server, 3))
        prometheus = Prometheus(tmp_path, {"kme": [f"127.0.0.1:{kme.control}"],
                                           "sidecars": [f"127.0.0.1:{server.admin_port}",
                                                        f"127.0.0.1:{client.admin_port}"]})
        prometheus.wait("every target up", lambda: len(prometheus.query("up == 1")) == 3)
        names = set(prometheus.wait("series", lambda: prometheus.api("label/__name__/values")
                                    if "pqproxy_qkd_network_pair_keys_total" in prometheus.api("label/__name__/values")
                                    and "pqproxy_qkd_keys_total" in prometheus.api("label/__name__/values") else None))
        assert _names_used() <= names, sorted(_names_used() - names)
        def evaluated() -> list[Any] | None:
            groups = prometheus.api("rules")["groups"]
            done = all(not r.get("lastEvaluation", "0001").startswith("0001") for g in groups for r in g["rules"])
            return groups if groups and done else None

        groups = prometheus.wait("every rule evaluated", evaluated)
        assert {g["name"] for g in groups} == {"pqproxy-qkd-network", "pqproxy-sidecars"}
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        availability = prometheus.wait("availability recorded",
                                       lambda: prometheus.query("pqproxy:qkd_pair_availability:ratio_rate5m"))
        assert availability[0]["metric"]["pair"] == "alice-carol" and float(availability[0]["value"][1]) == 1.0
        hops = prometheus.query('pqproxy_qkd_network_pair_route_hops{pair="alice-carol"}')
        assert float(hops[0]["value"][1]) == 2.0  # A-B, B-C: through the trusted node B
        # An eavesdropper on A-B: the link goes down in the series, and the alert is on its way.
        kme.eavesdrop("A-B", 0.5)
        prometheus.wait("A-B down", lambda: prometheus.query('pqproxy_qkd_network_link_up{link="A-B"} == 0'))
        pending = prometheus.wait("QKDLinkAborted pending", lambda: prometheus.query(
            'ALERTS{alertname="QKDLinkAborted", link="A-B"}'))
        assert pending[0]["metric"]["alertstate"] in ("pending", "firing")
        qber = prometheus.query('pqproxy_qkd_network_link_qber{link="A-B"}')
        assert float(qber[0]["value"][1]) > 0.11
    finally:
        if prometheus is not None:
            prometheus.stop()
        for sidecar in (client, server):
            if sidecar is not None:
                sidecar.stop()
        kme.stop()
        upstream.close()
    assert not os.path.exists(tmp_path / "tsdb" / "lock")
