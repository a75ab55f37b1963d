"""The deployment examples in deploy/ hang together: what can be checked without systemd or a cluster.

- deploy/*.toml use the agreed configuration keys and pass pqproxy's own configuration loader;
- the systemd units carry the hardening directives, hand over exactly the credentials the TOML names,
  stop slower than the drain, use only flags ``pqproxy --help`` knows, and pass ``systemd-analyze verify``
  (and ``security`` with an exposure of at most 2.5) where systemd-analyze is installed;
- the Kubernetes manifests parse, and their ports, probes, mounts and grace period agree with the TOML
  embedded in their ConfigMaps.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
UNITS = {"server": DEPLOY / "systemd" / "pqproxy-server.service",
         "client": DEPLOY / "systemd" / "pqproxy-client.service"}
TOMLS = {"server": DEPLOY / "server.toml", "client": DEPLOY / "client.toml"}
MANIFESTS = {"server": DEPLOY / "kubernetes" / "pod-sidecar.yaml",
             "client": DEPLOY / "kubernetes" / "pod-client-sidecar.yaml"}

SERVER_KEYS = {"listen", "upstream", "cert", "key", "groups", "require_hybrid", "client_ca", "admin", "workers",
               "limits", "routes", "ticket_key_file"}
CLIENT_KEYS = {"listen", "connect", "sni", "ca", "insecure", "cert", "key", "groups", "admin", "workers", "limits"}
LIMIT_KEYS = {"handshake_timeout", "idle_timeout", "connect_timeout", "max_connections", "max_client_hello",
              "drain_timeout"}
ROUTE_KEYS = {"sni", "upstream", "cert", "key"}


# --- helpers ---------------------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}} (keys may repeat, unlike configparser)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(service: dict[str, list[str]], key: str) -> str:
    assert key in service, f"{key}= missing"
    return service[key][-1]


@functools.cache
def cli_help(mode: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pqproxy", mode, "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout


def assert_cli_accepts(args: list[str]) -> None:
    """``args`` = [mode, --flag, value, ...]: every --flag is one ``pqproxy MODE --help`` lists."""
    mode, *rest = args
    assert mode in ("server", "client", "probe"), args
    known = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", cli_help(mode)))
    for token in rest:
        if token.startswith("--"):
            assert token.split("=", 1)[0] in known, f"`pqproxy {mode}` has no {token} (--help lists {sorted(known)})"


def toml_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def credential_ids(toml_text: dict[str, Any], unit_name: str) -> set[str]:
    """The /run/credentials/<unit>/<id> files a configuration names (recursively)."""
    prefix = f"/run/credentials/{unit_name}/"
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if value.startswith("/run/credentials/"):
                assert value.startswith(prefix), f"{value} is not under {prefix}"
                found.add(value.removeprefix(prefix))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(toml_text)
    return found


# --- TOML ------------------------------------------------------------------------------------------------


def test_server_toml_uses_the_agreed_keys() -> None:
    data = tomllib.loads(TOMLS["server"].read_text())
    assert set(data) <= SERVER_KEYS, set(data) - SERVER_KEYS
    assert {"listen", "upstream", "cert", "key", "groups", "require_hybrid", "admin", "workers"} <= set(data)
    assert set(data["limits"]) == LIMIT_KEYS
    assert data["groups"][0] == "X25519MLKEM768"
    assert isinstance(data["require_hybrid"], bool)
    assert data["routes"] and all(set(route) == ROUTE_KEYS for route in data["routes"])


def test_client_toml_uses_the_agreed_keys() -> None:
    data = tomllib.loads(TOMLS["client"].read_text())
    assert set(data) <= CLIENT_KEYS, set(data) - CLIENT_KEYS
    assert set(data["limits"]) <= LIMIT_KEYS


def _embedded_tomls() -> dict[str, tuple[str, str]]:
    """{label: (mode, TOML text)} for every example configuration, files and ConfigMaps."""
    out = {f"deploy/{p.name}": (mode, p.read_text()) for mode, p in TOMLS.items()}
    for mode, manifest in MANIFESTS.items():
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc.get("kind") == "ConfigMap":
                for name, text in doc["data"].items():
                    if name.endswith(".toml"):
                        out[f"{manifest.name}:{name}"] = (mode, text)
    return out


@pytest.mark.parametrize("label", sorted(_embedded_tomls()))
def test_example_configuration_passes_pqproxy_loader(label: str) -> None:
    try:
        from pqproxy.proxy.config import client_settings, server_settings
    except ImportError as exc:
        pytest.skip(f"pqproxy has no TOML configuration loader yet ({exc})")
    mode, text = _embedded_tomls()[label]
    load = server_settings if mode == "server" else client_settings
    load(tomllib.loads(text), {}, label)  # raises ConfigError naming the bad key


# --- systemd ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["server", "client"])
def test_unit_is_hardened(mode: str) -> None:
    unit = parse_unit(UNITS[mode])
    service = unit["Service"]
    config = tomllib.loads(TOMLS[mode].read_text())

    assert one(service, "DynamicUser") == "yes" or one(service, "User") == "pqproxy"
    for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                       "ProtectHome": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                       "Restart": "on-failure", "KillSignal": "SIGTERM",
                       "ExecReload": "/bin/kill -HUP $MAINPID"}.items():
        assert one(service, key) == value, f"{key}={one(service, key)}, want {value}"
    assert "@system-service" in service["SystemCallFilter"]

    needed = {"CAP_NET_BIND_SERVICE"} if toml_port(config["listen"]) < 1024 else set()
    assert set(one(service, "CapabilityBoundingSet").split()) == needed
    assert set(service.get("AmbientCapabilities", [""])[-1].split()) <= needed

    drain = float(config.get("limits", {}).get("drain_timeout", 30.0))
    stop = one(service, "TimeoutStopSec")
    assert stop.isdigit() and int(stop) > drain, f"TimeoutStopSec={stop} must exceed drain_timeout={drain}"

    exec_start = one(service, "ExecStart").split()
    assert exec_start[0].endswith("/pqproxy") and exec_start[1:] == [mode, "--config", f"/etc/pqproxy/{mode}.toml"]

    loaded = {entry.partition(":")[0] for entry in service.get("LoadCredential", [])}
    named = credential_ids(config, UNITS[mode].name)
    assert named and named == loaded, f"TOML names {sorted(named)}, unit loads {sorted(loaded)}"


@pytest.mark.parametrize("mode", ["server", "client"])
def test_unit_exec_start_flags_exist(mode: str) -> None:
    exec_start = one(parse_unit(UNITS[mode])["Service"], "ExecStart").split()
    assert_cli_accepts(exec_start[1:])


def _units_runnable_here(tmp_path: Path) -> list[Path]:
    """Copies of the units whose ExecStart runs this checkout's pqproxy (verify wants an executable)."""
    out = []
    for path in UNITS.values():
        text = re.sub(r"^ExecStart=\S+/pqproxy ", f"ExecStart={sys.executable} -m pqproxy ", path.read_text(),
                      flags=re.M)
        copy = tmp_path / path.name
        copy.write_text(text)
        out.append(copy)
    return out


def test_units_pass_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: `verify` and `security` not run (the directive "
                    "checks above still ran)")
    units = [str(p) for p in _units_runnable_here(tmp_path)]
    verify = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=120)
    # verify exits 0 even for unknown directives or bad values: it only warns, so any output is a failure
    assert verify.returncode == 0 and not (verify.stdout + verify.stderr).strip(), verify.stdout + verify.stderr
    for unit in units:
        security = subprocess.run([analyze, "security", "--offline=yes", "--threshold=25", unit],
                                  capture_output=True, text=True, timeout=120)
        assert security.returncode == 0, f"exposure above 2.5 for {unit}:\n{security.stdout[-3000:]}"


# --- Kubernetes ------------------------------------------------------------------------------------------


def _docs(mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(MANIFESTS[mode].read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "Pod"], kinds
    return docs[0], docs[1]


def _pqproxy_container(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod["spec"]
    found = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == "pqproxy"]
    assert len(found) == 1
    return found[0]


def _mounted_file(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """(volume, key inside it) that provides ``path`` in ``container``."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        mount_path = mount["mountPath"].rstrip("/")
        if "subPath" in mount and path == mount_path:
            return volumes[mount["name"]], mount["subPath"]
        if "subPath" not in mount and path.startswith(mount_path + "/"):
            return volumes[mount["name"]], path[len(mount_path) + 1 :]
    raise AssertionError(f"nothing mounted at {path}")


@pytest.mark.parametrize("mode", ["server", "client"])
def test_kubernetes_sidecar_manifest(mode: str) -> None:
    config_map, pod = _docs(mode)
    spec = pod["spec"]
    proxy = _pqproxy_container(pod)
    assert proxy["args"][:2] == [mode, "--config"]
    assert_cli_accepts(proxy["args"])

    # the --config file is the ConfigMap's TOML
    volume, key = _mounted_file(pod, proxy, proxy["args"][2])
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    config = tomllib.loads(config_map["data"][key])

    # hardening, resources, grace period longer than the drain
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"requests", "limits"} <= set(container["resources"]), container["name"]
    assert spec["terminationGracePeriodSeconds"] > float(config["limits"]["drain_timeout"])

    # probes on the admin port, which is where the TOML puts the admin endpoint (on all interfaces)
    ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert config["admin"].startswith("0.0.0.0:") and ports["admin"] == toml_port(config["admin"]) == 9090
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert proxy["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}

    # certificates and CAs come from Secret volumes
    for field in ("cert", "key", "ca", "client_ca", "ticket_key_file"):
        if field in config:
            volume, _ = _mounted_file(pod, proxy, config[field])
            assert "secret" in volume, f"{field} = {config[field]} is not from a Secret"
    if "ticket_key_file" in config:  # pqproxy refuses a world-readable one: the Secret's files must not be
        volume, _ = _mounted_file(pod, proxy, config["ticket_key_file"])
        assert volume["secret"].get("defaultMode", 0o644) & 0o004 == 0, volume

    if mode == "server":
        assert "ticket_key_file" in config, "replicas of the service share their session-ticket keys"
        assert config["listen"] == "0.0.0.0:8443" and ports["https"] == 8443
        assert config["upstream"] == "127.0.0.1:8080"
        app = next(c for c in spec["containers"] if c["name"] == "app")
        assert "127.0.0.1:8080" in " ".join(app.get("args", []))
    else:
        assert proxy.get("restartPolicy") == "Always", "the client sidecar is a native sidecar (init container)"
        assert config["listen"] == "127.0.0.1:9000"
        app = next(c for c in spec["containers"] if c["name"] == "app")
        assert any("127.0.0.1:9000" in e.get("value", "") for e in app.get("env", []))


# --- the probe campaign (an Indexed Job and a merge Job) -------------------------------------------------------

CAMPAIGN = DEPLOY / "kubernetes" / "probe-campaign.yaml"


def _flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def _campaign() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(CAMPAIGN.read_text()) if d]
    assert [d["kind"] for d in docs] == ["ConfigMap", "PersistentVolumeClaim", "Job", "Job"]
    config_map, claim, shards, merge = docs
    return config_map, claim, shards, merge


def test_probe_campaign_manifest() -> None:
    from pqproxy.probe.campaign import read_targets

    config_map, claim, shards, merge = _campaign()
    spec = shards["spec"]
    assert spec["completionMode"] == "Indexed" and 1 <= spec["parallelism"] <= spec["completions"]
    count = spec["completions"]
    pod = shards["spec"]["template"]
    (shard,) = pod["spec"]["containers"]
    args = shard["args"]
    assert args[0] == "probe"
    assert_cli_accepts(args)
    assert _flag(args, "--shard") == f"auto/{count}", "--shard's N is the Job's completions"
    assert "$(JOB_COMPLETION_INDEX)" in _flag(args, "--json")
    assert {"--exit-zero", "--no-raw"} <= set(args) and float(_flag(args, "--rate")) > 0
    # the targets file is the ConfigMap's, and every line of it is a target
    volume, key = _mounted_file(pod, shard, _flag(args, "--targets"))
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert list(read_targets(config_map["data"][key].splitlines(), key))
    # the merge reads exactly the shards' reports, from the same claim
    merge_pod = merge["spec"]["template"]
    (merger,) = merge_pod["spec"]["containers"]
    assert merger["args"][:2] == ["probe", "merge"]
    assert_cli_accepts(["probe", *merger["args"][2:]])
    files = [a for a in merger["args"][2:] if a.endswith(".json") and not a.endswith("all.json")]
    assert files == [_flag(args, "--json").replace("$(JOB_COMPLETION_INDEX)", str(i)) for i in range(count)]
    claims = {v["persistentVolumeClaim"]["claimName"] for p in (pod, merge_pod) for v in p["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {claim["metadata"]["name"]} and "ReadWriteMany" in claim["spec"]["accessModes"]
    (wait,) = merge_pod["spec"]["initContainers"]
    assert f"range({count})" in " ".join(wait["command"]), "the merge waits for every shard"
    for p in (pod, merge_pod):
        assert p["spec"]["securityContext"]["runAsNonRoot"] is True and p["spec"]["restartPolicy"] == "Never"
        for container in p["spec"]["containers"] + p["spec"].get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"], container["name"]
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]


def test_probe_campaign_commands_run_as_the_jobs_would(tmp_path: Path) -> None:
    """The manifest's own command lines, with the Job controller's JOB_COMPLETION_INDEX, /targets and /results
    pointed at a loopback targets file and a directory here: the shards, then the merge and its exit status."""
    from tests.procs import free_port

    _, _, shards, merge = _campaign()
    count = shards["spec"]["completions"]
    (targets := tmp_path / "targets.txt").write_text("".join(f"127.0.0.1:{free_port()} t{i}.test\n"
                                                             for i in range(6)))
    results = tmp_path / "results"
    results.mkdir()

    def here(arg: str) -> str:
        return arg.replace("/targets/targets.txt", str(targets)).replace("/results", str(results))

    for index in range(count):
        args = [here(a).replace("$(JOB_COMPLETION_INDEX)", str(index))
                for a in shards["spec"]["template"]["spec"]["containers"][0]["args"]]
        done = subprocess.run([sys.executable, "-m", "pqproxy", *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "JOB_COMPLETION_INDEX": str(index)})
        assert done.returncode == 0, done.stderr  # --exit-zero: the shard's pod succeeds
    merged = subprocess.run([sys.executable, "-m", "pqproxy",
                             *[here(a) for a in merge["spec"]["template"]["spec"]["containers"][0]["args"]]],
                            capture_output=True, text=True, timeout=300)
    assert merged.returncode == 2, merged.stderr  # closed ports: the campaign could not probe them
    report = json.loads((results / "all.json").read_text())
    assert sorted(t["index"] for t in report["targets"]) == list(range(6))
    assert (results / "all.xml").exists() and (results / "all.html").exists()
