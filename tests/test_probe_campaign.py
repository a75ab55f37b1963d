"""Issue 19, part 1: probe campaigns in shards, paced, streamed and merged (``pqproxy/probe/campaign.py``).

The split (every target in exactly one shard, whatever the file's order: hypothesis), ``--shard auto/N`` from
``JOB_COMPLETION_INDEX``, the pacer (on trio's mock clock: spacing, not timing), the streamed JSON (the same
document ``write_json`` writes), and the end to end case: shards 0..N-1 run as separate ``pqproxy probe``
processes against healthy and broken loopback targets, merged, equal to one process probing them all.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pqproxy.certs import write_dev_pki
from pqproxy.lab.emulators import CodepointEmulator, SizeThresholdEmulator
from pqproxy.probe.campaign import JSONStream, Pacer, merge, parse_shard, read_targets, shard_of
from pqproxy.probe.engine import Target
from pqproxy.probe.report import write_json
from tests.procs import free_port
from tests.sidecar_kit import HOST, Backend, Sidecar, server_args
from tests.test_probe_report import broken_target, clean_target, run, unreachable_target

hosts = st.one_of(st.from_regex(r"[a-z]{1,12}(\.[a-z]{1,8}){0,2}", fullmatch=True),
                  st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))))
lines = st.lists(st.tuples(hosts, st.integers(1, 65535), st.one_of(st.none(), hosts)), max_size=60).map(
    lambda ts: [f"{h}:{p}" + (f" {n}" if n else "") for h, p, n in ts])


@settings(max_examples=150, deadline=None)
@given(targets=lines, shards=st.integers(1, 12), seed=st.integers(0, 2**32))
def test_every_target_is_in_exactly_one_shard_whatever_the_order(targets: list[str], shards: int, seed: int) -> None:
    everyone = list(read_targets(targets, "t"))
    taken = [position for i in range(shards) for position, _ in read_targets(targets, "t", shard=(i, shards))]
    assert sorted(taken) == [position for position, _ in everyone]  # each position once: no gap, no double
    shuffled = targets[:]
    random.Random(seed).shuffle(shuffled)
    assert {t: shard_of(t, shards) for _, t in everyone} == {t: shard_of(t, shards)
                                                             for _, t in read_targets(shuffled, "t")}


def test_positions_count_every_target_line_whatever_the_shard() -> None:
    text = ["# fleet", "a.test:443", "", "b.test:8443 name.test  # comment", "10.0.0.1"]
    assert [(i, t.host) for i, t in read_targets(text, "f")] == [(0, "a.test"), (1, "b.test"), (2, "10.0.0.1")]
    with pytest.raises(ValueError, match="f:2: target"):
        list(read_targets(["ok.test", "bad:port"], "f"))


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("2/5", {}, (2, 5)),
    ("auto/5", {"JOB_COMPLETION_INDEX": "4"}, (4, 5)),
    ("auto/5", {}, "JOB_COMPLETION_INDEX is not set"),
    ("5/5", {}, "I must be from 0 to 4"),
    ("1/0", {}, "N must be from 1"),
    ("x", {}, "want I/N"),
])
def test_shard_argument(text: str, env: dict[str, str], expected: Any) -> None:
    if isinstance(expected, tuple):
        assert parse_shard(text, env) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_shard(text, env)


def test_the_pacer_spaces_connections_across_tasks() -> None:
    """Ten tasks asking at once for a slot at 4 a second get slots 0.25 s apart (on trio's mock clock)."""
    granted: list[float] = []

    async def main() -> None:
        pacer = Pacer(4.0)

        async def connect() -> None:
            await pacer.wait()
            granted.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(connect)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    start = granted[0]
    assert [round(t - start, 6) for t in sorted(granted)] == [round(0.25 * i, 6) for i in range(10)]
    with pytest.raises(ValueError, match="--rate"):
        Pacer(0)


def test_the_streamed_json_is_the_report_write_json_writes(tmp_path: Path) -> None:
    report = run(broken_target(), clean_target(), unreachable_target())
    for i, t in enumerate(report.targets):
        t.index = i
    write_json(report, tmp_path / "whole.json")
    stream = JSONStream(tmp_path / "streamed.json", report)
    for t in report.targets:
        stream.add(t)
    stream.close(report.regressions)
    assert json.loads((tmp_path / "streamed.json").read_text()) == json.loads((tmp_path / "whole.json").read_text())
    empty = JSONStream(tmp_path / "empty.json", report)
    empty.close([])
    assert json.loads((tmp_path / "empty.json").read_text())["targets"] == []


def test_merge_refuses_shards_of_different_campaigns_or_a_target_twice() -> None:
    a, b = run(clean_target()), run(clean_target())
    a.targets[0].index = b.targets[0].index = 0
    with pytest.raises(ValueError, match=r"in both a\.json and b\.json"):
        merge([("a.json", a), ("b.json", b)])
    b.suite = "quick"
    with pytest.raises(ValueError, match="not one campaign"):
        merge([("a.json", a), ("b.json", b)])


# --- shards as processes, against real targets ----------------------------------------------------------------


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Target lines: a pqproxy server by name and by address (twice each, under two names), the same behind a
    size cap and behind a codepoint-refusing box (both broken), and a closed port (unreachable)."""
    work = tmp_path_factory.mktemp("fleet")
    pki = write_dev_pki(work / "pki", alg="ecdsa", names=("localhost", HOST, "alt.test"))
    upstream = Backend("echo")
    server = Sidecar("server", server_args(pki, upstream.address), admin=False)
    boxes = [SizeThresholdEmulator(server.port, limit=1500), CodepointEmulator(server.port)]
    try:
        yield [f"{HOST}:{server.port} localhost", f"{HOST}:{server.port} alt.test", f"{HOST}:{server.port}",
               f"{HOST}:{boxes[0].port} localhost", f"{HOST}:{boxes[0].port} alt.test",
               f"{HOST}:{boxes[1].port} localhost", f"{HOST}:{boxes[1].port}", f"{HOST}:{free_port()} localhost"]
    finally:
        for box in boxes:
            box.stop()
        server.stop()
        upstream.close()


def _probe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pqproxy", "probe", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def _facts(report: dict[str, Any]) -> list[Any]:
    """What must be equal: each target, its probes' verdicts, its diagnoses and readiness, in the file's order."""
    return [(t["index"], t["target"], t["server_name"], t["reachable"],
             [(r["spec"]["id"], r["verdict"]) for r in t["results"]],
             sorted(d["id"] for d in t["diagnoses"]), (t["readiness"] or {}).get("verdict"))
            for t in sorted(report["targets"], key=lambda t: t["index"])]


def test_shards_as_separate_processes_merge_into_the_single_run(fleet: list[str], tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text("# a campaign\n" + "\n".join(fleet) + "\n")
    common = ["--targets", str(listing), "--suite", "ci", "--attempts", "1", "--concurrency", "4", "--quiet"]
    shards = 3
    procs = [subprocess.Popen([sys.executable, "-m", "pqproxy", "probe", *common, "--shard", f"{i}/{shards}",
                               "--json", str(tmp_path / f"shard-{i}.json")], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(shards)]
    single = _probe(*common, "--json", str(tmp_path / "single.json"), cwd=tmp_path)
    for proc in procs:
        proc.communicate(timeout=600)
    assert single.returncode == 2, single.stderr  # the closed port
    parts = [json.loads((tmp_path / f"shard-{i}.json").read_text()) for i in range(shards)]
    assert sum(len(p["targets"]) for p in parts) == len(fleet)
    assert sum(1 for p in parts if p["targets"]) >= 2, "the split put every target in one shard"

    merged = _probe("merge", *[str(tmp_path / f"shard-{i}.json") for i in range(shards)], "--json",
                    str(tmp_path / "all.json"), "--junit", str(tmp_path / "all.xml"), "--html",
                    str(tmp_path / "all.html"), "--quiet", cwd=tmp_path)
    assert merged.returncode == single.returncode, merged.stderr
    whole = json.loads((tmp_path / "single.json").read_text())
    combined = json.loads((tmp_path / "all.json").read_text())
    assert _facts(combined) == _facts(whole)
    assert [t["index"] for t in combined["targets"]] == list(range(len(fleet)))  # merged: the file's order
    diagnosed = {t["target"] + " " + str(t["server_name"]): sorted(d["id"] for d in t["diagnoses"])
                 for t in combined["targets"]}
    assert diagnosed[f"{fleet[5]}"] == ["codepoint"]
    assert "<testsuites" in (tmp_path / "all.xml").read_text() and "<html" in (tmp_path / "all.html").read_text()
    # Merging a shard twice is refused.
    twice = _probe("merge", str(tmp_path / "shard-0.json"), str(tmp_path / "shard-0.json"), cwd=tmp_path)
    nonempty = next(i for i in range(shards) if parts[i]["targets"])
    if nonempty == 0:
        assert twice.returncode == 2 and "in both" in twice.stderr


def test_a_target_list_is_read_as_a_stream(tmp_path: Path) -> None:
    """A bad line far down the file is refused before anything is probed, naming the line."""
    listing = tmp_path / "targets.txt"
    listing.write_text("".join(f"{HOST}:{free_port()}\n" for _ in range(3)) + "bad.test:port\n")
    done = _probe("--targets", str(listing), "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "targets.txt:4" in done.stderr, done.stderr
    assert done.stdout == ""


def test_rate_and_shard_reach_the_cli(tmp_path: Path) -> None:
    listing = tmp_path / "targets.txt"
    listing.write_text(f"{HOST}:{free_port()}\n")
    done = _probe("--targets", str(listing), "--shard", "auto/2", "--quiet", cwd=tmp_path)
    assert done.returncode == 2 and "JOB_COMPLETION_INDEX" in done.stderr
    bad = _probe("--targets", str(listing), "--rate", "0", "--quiet", cwd=tmp_path)
    assert bad.returncode == 2 and "--rate" in bad.stderr
    target = Target(HOST, 1, None)
    mine = shard_of(target, 2)
    for index in range(2):
        ran = _probe(f"{HOST}:1", "--shard", f"{index}/2", "--rate", "50", "--quiet", "--suite", "quick",
                     cwd=tmp_path)
        assert (ran.stdout.startswith(f"{HOST}:1\t")) == (index == mine), ran.stdout  # in its shard only
        assert ran.returncode == (2 if index == mine else 0), ran.stderr
