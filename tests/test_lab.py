"""``pqproxy lab``: every scenario gets exactly its diagnosis from ``pqproxy probe``, and nothing is left behind.

The lab is real: namespaces, veth links, a narrow tunnel with its ICMP dropped, HAProxy, nginx, Squid and
Node 26 from their packages, the documented emulators (socket proxies and the NFQUEUE early-verdict IPS).
These tests drive it only through its command line, as a user would, and check the host afterwards:
no namespace, link, firewall rule, process or directory of the lab may survive ``down``, a failed
``up`` or a Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pqproxy.lab import control, gear, scenarios
from pqproxy.lab.netns import existing, lab_processes, netns_unavailable
from pqproxy.probe import model
from tests.procs import require

RUN_TIMEOUT = 600  # the whole `lab run`: about two minutes here


def _name() -> str:
    """A lab name of our own (namespaces are global): parallel workers and runs never collide."""
    return f"t{os.getpid() % 100000}{int(time.monotonic() * 1000) % 100}"


def _lab(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pqproxy", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


LAB_LINKS = {"c0", "r1c", "r1w", "r1n", "r2w", "r2n", "r2m", "m0", "m1", "s0"}  # pqproxy.lab.topology's veths


def _left_on_host() -> list[str]:
    """What of the lab is on the host's own network: its links, its nftables or iptables rules. (Other tests
    running beside this one add rules of their own, so the check is for the lab's, not for any change.)"""
    def out(*argv: str) -> str:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=10).stdout

    links = {line.split(":")[1].split("@")[0].strip() for line in out("ip", "-o", "link").splitlines() if ":" in line}
    left = [f"link {name}" for name in sorted(links & LAB_LINKS)]
    left += [f"nft: {line.strip()}" for line in out("nft", "list", "ruleset").splitlines()
             if "198.18." in line or "table inet lab" in line]
    left += [f"iptables: {line}" for line in out("iptables-legacy-save").splitlines()
             if "198.18." in line or "NFQUEUE" in line]
    return left


@pytest.fixture
def lab_name() -> Iterator[tuple[str, Path]]:
    require(netns_unavailable())
    for tool in ("nft", "iptables-legacy", "haproxy", "nginx", "squid"):
        require(gear.missing_gear(tool))
    name = _name()
    directory = control.state_dir(name)  # the default: Squid, as its own user, must reach it
    assert _left_on_host() == []
    yield name, directory
    _lab("down", "--name", name)  # whatever the test did
    assert existing(name) == []
    assert lab_processes(name) == []
    assert _left_on_host() == []


def test_every_scenario_gets_exactly_its_diagnosis(lab_name: tuple[str, Path]) -> None:
    name, directory = lab_name
    done = _lab("run", "--name", name, "--json", "-", timeout=RUN_TIMEOUT)
    assert "Traceback" not in done.stderr, done.stderr
    document = json.loads(done.stdout)
    assert document["schema"] == "pqproxy-lab/1"
    results = {r["id"]: r for r in document["scenarios"]}
    assert set(results) == {s.id for s in scenarios.SCENARIOS}
    wrong = {i: (r["expected"], r["found"], r["error"], r["summaries"]) for i, r in results.items() if not r["ok"]}
    assert wrong == {}
    for scenario in scenarios.SCENARIOS:
        r = results[scenario.id]
        assert r["error"] is None, r
        assert set(r["found"]) == scenario.expected, r
        assert r["exit_code"] == (1 if scenario.expected else 0), r
    assert results["pmtu-blackhole"]["found_hop"] == "198.18.1.2"
    assert done.returncode == 0
    # `run` brought the lab up itself, so it took it down again (the fixture checks the host).
    assert existing(name) == []
    assert not directory.exists()


def test_up_status_down(lab_name: tuple[str, Path]) -> None:
    name, directory = lab_name
    up = _lab("up", "--name", name)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"ip netns exec {name}-client pqproxy probe 198.18.3.2:8441 --sni good.test" in up.stdout
    assert sorted(existing(name)) == sorted(f"{name}-{role}" for role in ("client", "router1", "router2",
                                                                          "middlebox", "server"))
    again = _lab("up", "--name", name)
    assert again.returncode == 2 and "already up" in again.stderr, again.stderr

    status = _lab("status", "--name", name)
    assert status.returncode == 0, status.stdout + status.stderr
    for service in ("pqproxy-server", "node", "haproxy", "haproxy-inspect", "nginx", "squid", "emulators",
                    "early-verdict", "quic-server", "quic-router"):
        assert any(line.split()[:1] == [service] and line.rstrip().endswith("running")
                   for line in status.stdout.splitlines()), status.stdout
    assert lab_processes(name) != []

    # A scenario by hand against the lab that is up (`run` uses it and leaves it up).
    one = _lab("run", "--name", name, "--scenario", "codepoint", "--json", "-")
    assert json.loads(one.stdout)["scenarios"][0]["found"] == ["codepoint"], one.stdout + one.stderr
    assert existing(name) != []

    down = _lab("down", "--name", name)
    assert down.returncode == 0 and f"{name}-middlebox" in down.stdout, down.stdout + down.stderr
    assert existing(name) == [] and lab_processes(name) == [] and not directory.exists()
    assert _lab("status", "--name", name).returncode == 1
    assert "was not up" in _lab("down", "--name", name).stdout


def test_interrupted_run_leaves_nothing_behind(lab_name: tuple[str, Path]) -> None:
    name, directory = lab_name
    proc = subprocess.Popen([sys.executable, "-m", "pqproxy", "lab", "run", "--name", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (directory / "reports").exists():  # up, and probing
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted; cleaned up" in err and "Traceback" not in err, err
    assert existing(name) == [] and lab_processes(name) == [] and not directory.exists()


def test_a_service_that_fails_to_start_is_named_and_cleaned_up(lab_name: tuple[str, Path], tmp_path: Path) -> None:
    name, directory = lab_name
    fake = tmp_path / "node"  # passes the version check, then dies at once as a server
    fake.write_text("#!/bin/sh\n[ \"$1\" = -p ] && { echo 26.0.0; exit 0; }\necho 'cannot listen' >&2\nexit 3\n")
    fake.chmod(0o755)
    done = _lab("up", "--name", name, env={**os.environ, "PQPROXY_NODE": str(fake)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "node exited with 3" in done.stderr and "cannot listen" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert existing(name) == [] and lab_processes(name) == []
    assert (directory / "logs" / "node.log").exists()  # kept, for the user to read


def test_not_root_is_said_clearly(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pqproxy.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for action in ("up", "down", "status", "run"):
        assert main(["lab", action, "--name", "nobody"]) == 2
        assert "pqproxy lab needs root" in capsys.readouterr().err


def test_bad_names_and_scenarios_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from pqproxy.cli import main

    assert main(["lab", "up", "--name", "x;rm"]) == 2
    assert "lab name" in capsys.readouterr().err
    assert main(["lab", "run", "--scenario", "no-such", "--name", "pqlab"]) == 2
    assert "unknown scenario no-such" in capsys.readouterr().err


def test_scenarios_cover_every_diagnosis_and_clean_paths() -> None:
    """The lab demonstrates each diagnosis of the catalogue, TCP and QUIC, and clean paths of every kind of
    gear it runs; a new diagnosis without a scenario fails here."""
    expected = set().union(*(s.expected for s in scenarios.SCENARIOS))
    assert expected == set(model.DIAGNOSIS_IDS)
    clean = {s.id for s in scenarios.SCENARIOS if not s.expected}
    assert {"clean-pqproxy", "clean-node", "nginx-preread", "pmtu-clamped", "quic-clean"} <= clean
    assert all(s.target.startswith("198.18.") for s in scenarios.SCENARIOS)
    assert len({s.id for s in scenarios.SCENARIOS}) == len(scenarios.SCENARIOS)


def test_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    from pqproxy.cli import main

    assert main(["lab", "run", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [s.id for s in scenarios.SCENARIOS]


async def test_a_mismatch_is_probed_once_more_with_twice_the_timeout(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    from pqproxy.lab import runner

    scenario = next(s for s in scenarios.SCENARIOS if s.id == "early-verdict")
    answers: dict[str, list[tuple[bool, list[str], str | None]]] = {
        "transient": [(False, [], None), (True, ["early-verdict"], None)],
        "real": [(False, ["size-threshold"], None), (False, ["size-threshold"], None)],
        "error": [(False, [], "the probe did not finish in 300 s")],
    }
    timeouts: list[float] = []

    for case, script in answers.items():
        replies = list(script)

        async def attempt(sc: Any, ns: str, suite: str, timeout: float, out: Path, unavailable: Any,
                          replies: list[tuple[bool, list[str], str | None]] = replies) -> Any:
            timeouts.append(timeout)
            ok, found, error = replies.pop(0)
            return runner.ScenarioResult(sc.id, sc.kind, sc.gear, sc.target, sorted(sc.expected), found=found,
                                         ok=ok, error=error, seconds=1.0)

        monkeypatch.setattr(runner, "_attempt", attempt)
        timeouts.clear()
        result = await runner._run_one(scenario, "ns", "default", 1.0, tmp_path, None)
        assert not replies, case  # every scripted attempt was made, and no more
        if case == "transient":
            assert result.ok and result.rechecked and result.first_found == [] and timeouts == [1.0, 2.0]
            assert result.seconds == 2.0
        elif case == "real":
            assert not result.ok and result.rechecked and result.found == ["size-threshold"]
        else:
            assert not result.ok and not result.rechecked and timeouts == [1.0]  # a probe that hung: not again
