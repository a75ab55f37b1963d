"""``pqproxy lab up|down|status|run``: the middlebox lab from the command line.

Exit codes: 0 done (``run``: every scenario got exactly its expected diagnoses); 1 ``run`` found a
scenario whose diagnoses differ, or one could not be run; 2 the lab cannot be built or used here (not
root, a tool missing, already up), or bad usage.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_MISMATCH, EXIT_UNUSABLE = 0, 1, 2


def add_lab_subparser(sub: Any) -> None:
    p = sub.add_parser(
        "lab", help="network namespaces with real and emulated middleboxes that break post-quantum hellos",
        description="A lab of network namespaces (client, two routers, a middlebox hop, servers; 198.18.0.0/15 "
        "only) with real middleboxes (HAProxy, nginx, Squid), documented emulators of the ones that cannot run "
        "here, a PMTU black hole and an MSS-clamped tunnel, so that every diagnosis of `pqproxy probe` can be "
        "seen on a real path. Needs root.")
    actions = p.add_subparsers(dest="lab_action", required=True, metavar="ACTION")
    for name, text in (("up", "build the lab and start its services; it stays up until `down`"),
                       ("down", "kill the lab's processes, delete its namespaces and directory"),
                       ("status", "the lab's namespaces and services, and whether each is running"),
                       ("run", "probe every scenario and print expected against found (brings the lab up and "
                               "down unless it is already up)")):
        a = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        a.add_argument("--name", default="pqlab", help="lab name, the namespaces' prefix (default pqlab)")
        a.add_argument("--dir", type=Path, help="the lab's directory (default /run/pqproxy-lab/NAME)")
        if name == "run":
            a.add_argument("--scenario", action="append", metavar="ID", help="run only these (repeatable)")
            a.add_argument("--suite", default="default", help="the probe suite (default: default)")
            a.add_argument("--timeout", type=float, default=1.0,
                           help="the probe's wait for an answer, seconds (default 1: the paths answer in ms)")
            a.add_argument("--concurrency", type=int, default=4, help="scenarios probed at once (default 4)")
            a.add_argument("--json", metavar="FILE", help="write the results as JSON (- for stdout)")
            a.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
            a.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.set_defaults(func=run_lab)


def _terminate(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def run_lab(args: argparse.Namespace) -> int:
    from . import control

    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.lab_action == "run" and args.list:
            return _list()
        control.check_name(args.name)
        if args.lab_action == "up":
            return _up(args)
        if args.lab_action == "down":
            removed = control.down(args.name, args.dir)
            print(f"lab {args.name}: removed {', '.join(removed)}" if removed else f"lab {args.name} was not up")
            return EXIT_OK
        if args.lab_action == "status":
            return _status(args)
        return _run(args)
    except control.LabError as exc:
        print(f"pqproxy lab: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print("pqproxy lab: interrupted; cleaned up", file=sys.stderr)
        return 130


def _list() -> int:
    from .scenarios import SCENARIOS

    for s in SCENARIOS:
        expected = ", ".join(sorted(s.expected)) or "none"
        print(f"{s.id:20} {s.kind:9} {s.target:18} expects {expected:30} {s.gear}")
    return EXIT_OK


def _up(args: argparse.Namespace) -> int:
    from . import control
    from .scenarios import SCENARIOS

    state = control.up(args.name, args.dir)
    print(f"lab {args.name} is up: namespaces {', '.join(state.namespaces)}; files in {state.directory}")
    for service, why in state.unavailable.items():
        print(f"  unavailable: {service}: {why}")
    print("probe a scenario by hand:")
    for s in SCENARIOS:
        if s.service in state.unavailable:
            continue
        proxy = f" --proxy {s.proxy}" if s.proxy else ""
        print(f"  {s.id:20} ip netns exec {state.ns.client} pqproxy probe {s.target} --sni good.test{proxy}")
    print(f"pqproxy lab down --name {args.name}   # when done")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from . import control

    state, rows = control.status(args.name, args.dir)
    if state is None:
        print(f"lab {args.name} is not up")
        return EXIT_MISMATCH
    print(f"lab {args.name}: namespaces {', '.join(state.namespaces)}; files in {state.directory}")
    for row in rows:
        pid = f"pid {row.pid}" if row.pid else "-"
        print(f"  {row.name:16} {row.namespace:18} {pid:10} {'running' if row.alive else row.note}")
    return EXIT_OK if all(r.alive for r in rows if r.pid) else EXIT_MISMATCH


def _run(args: argparse.Namespace) -> int:
    import trio

    from . import control
    from .runner import run_scenarios, to_json
    from .scenarios import BY_ID, SCENARIOS

    unknown = [s for s in args.scenario or () if s not in BY_ID]
    if unknown:
        print(f"pqproxy lab: unknown scenario {', '.join(unknown)} (pqproxy lab run --list)", file=sys.stderr)
        return EXIT_UNUSABLE
    chosen = [BY_ID[s] for s in args.scenario] if args.scenario else list(SCENARIOS)
    state = control.load(args.name, args.dir)
    brought_up = state is None
    if state is None:
        state = control.up(args.name, args.dir)
    try:
        out = Path(state.directory) / "reports"
        out.mkdir(exist_ok=True)
        quiet = args.json == "-"

        def progress(r: Any) -> None:
            if not quiet:
                print(f"  {'ok  ' if r.ok else 'FAIL'} {r.id} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)

        try:
            results = trio.run(lambda: run_scenarios(chosen, state.ns.client, out, unavailable=state.unavailable,
                                                     suite=args.suite, timeout=args.timeout,
                                                     concurrency=args.concurrency, on_result=progress))
        except BaseExceptionGroup as group:  # Ctrl-C inside the nursery arrives wrapped
            if group.subgroup(KeyboardInterrupt) is not None:
                raise KeyboardInterrupt from None
            raise
        document = to_json(results, args.name)
        if args.json == "-":
            print(json.dumps(document, indent=1))
        else:
            _table(results)
            if args.json:
                Path(args.json).write_text(json.dumps(document, indent=1))
    finally:
        if brought_up and not args.keep:
            with control.uninterruptible():
                control.down(args.name, args.dir)
    return EXIT_OK if document["ok"] else EXIT_MISMATCH


def _table(results: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="pqproxy lab: expected against found (pqproxy lab run --list: the gear of each)")
    for column in ("scenario", "kind", "expected", "found", ""):
        table.add_column(column)
    for r in results:
        expected = ", ".join(r.expected) or "none"
        found = r.error or ", ".join(r.found) or "none"
        if r.expected_hop:
            expected += f" @ {r.expected_hop}"
        if r.found_hop:
            found += f" @ {r.found_hop}"
        if r.rechecked:
            found += f" (rechecked; first: {', '.join(r.first_found or []) or 'none'})"
        table.add_row(r.id, r.kind, expected, found, "[green]ok[/]" if r.ok else "[red]MISMATCH[/]")
    Console().print(table)
    bad = [r for r in results if not r.ok]
    print(f"{len(results) - len(bad)} of {len(results)} scenarios as expected"
          + (f"; differing: {', '.join(r.id for r in bad)}" if bad else ""))
