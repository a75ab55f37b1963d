"""``pqproxy probe``: the command line of the probe suite.

Exit codes: 0 nothing broke; 1 breakage found (with ``--baseline``: a probe that passed in the
baseline fails now); 2 a target could not be probed at all, or bad usage.

Without a terminal (``--quiet``, a pipe, a CI log) and without ``--junit``/``--html``/``--baseline``, which need
the whole run at once, targets are read from the file one at a time and each target's lines (and its part of
``--json``) are written as it finishes: memory holds the targets in flight, not the campaign. ``pqproxy probe
merge FILE...`` joins the ``--json`` reports of a campaign's shards (``--shard I/N``) into one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_BROKEN, EXIT_UNREACHABLE = 0, 1, 2


def add_probe_subparser(sub: Any) -> None:
    p = sub.add_parser(
        "probe",
        help="send post-quantum ClientHellos in the shapes that break middleboxes; diagnose the path",
        description="Probe TARGET (host:port) with large post-quantum ClientHellos in every shape known to "
        "break routers, firewalls and load balancers, and rate the server's post-quantum readiness. "
        "Exit 0: nothing broke; 1: breakage found; 2: a target is unreachable, or bad usage.",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="host:port (port 443 if omitted); or 'merge' and the --json reports of a campaign's shards")
    p.add_argument("--targets", dest="targets_file", type=Path, metavar="FILE",
                   help="more targets, one per line (# comments; 'host:port sni' to set a name)")
    p.add_argument("--suite", default=None,
                   help="a shipped suite (default, quick, sweep, readiness, ci, quic) or a .toml file "
                        "(default: default, or quic with --quic)")
    p.add_argument("--quic", action="store_true",
                   help="probe over QUIC (UDP): the hello in one vs several Initial packets (the quic suite)")
    p.add_argument("--sni", metavar="NAME", help="server_name to send (default: the target's host name)")
    p.add_argument("--proxy", metavar="HOST:PORT",
                   help="reach the targets through this HTTP proxy (CONNECT), e.g. the corporate egress proxy")
    p.add_argument("--profile", help="the post-quantum hello of the checks: chrome, openssl35, mlkem1024, "
                   "replay:NAME (a capture in captures/) or replay:FILE.pcap")
    p.add_argument("--check", action="append", metavar="ID", help="run only these checks (repeatable)")
    p.add_argument("--attempts", type=int, help="attempts per probe")
    p.add_argument("--timeout", type=float, help="seconds to wait for an answer")
    p.add_argument("--pause", type=float, help="seconds between the writes of a split hello")
    p.add_argument("--concurrency", type=int, default=4, help="targets probed at once (default 4)")
    p.add_argument("--shard", metavar="I/N",
                   help="probe only shard I (0-based) of N: a split by a hash of each target, the same in every "
                        "process whatever the file's order; auto/N takes I from JOB_COMPLETION_INDEX (Kubernetes "
                        "Indexed Job)")
    p.add_argument("--rate", type=float, metavar="R", help="at most R new connections a second (this process)")
    p.add_argument("--exit-zero", action="store_true",
                   help="exit 0 whatever was found, once every target was probed (a campaign's shards: the job "
                        "succeeds, and probe merge gives the campaign's status); bad usage still exits 2")
    p.add_argument("--no-raw", action="store_true", help="no raw-packet probes, even as root")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the full report as JSON")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML for CI")
    p.add_argument("--html", type=Path, metavar="FILE", help="write a self-contained HTML report")
    p.add_argument("--pcap", type=Path, metavar="DIR", help="save every probe's packets (tcpdump; root)")
    p.add_argument("--baseline", type=Path, metavar="FILE",
                   help="an earlier --json report: fail only on probes that passed there")
    p.add_argument("--list-suites", action="store_true", help="list the shipped suites and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no table, no progress bar: the summary only")
    p.set_defaults(func=run_probe)


def _targets(args: argparse.Namespace, shard: tuple[int, int] | None) -> Iterator[tuple[int, Any]]:
    """(position, target): those of the command line, then the file's, read as they are needed."""
    import dataclasses
    import itertools

    from .campaign import file_lines, read_targets
    from .engine import parse_target

    lines: Iterable[str] = args.targets
    if args.targets_file is not None:
        lines = itertools.chain(lines, file_lines(args.targets_file))
    targets = read_targets(lines, str(args.targets_file or "command line"), args.sni, shard)
    if not args.proxy:
        return targets
    proxy = parse_target(args.proxy)
    return ((i, dataclasses.replace(t, proxy=(proxy.host, proxy.port))) for i, t in targets)


def _count_targets(args: argparse.Namespace, shard: tuple[int, int] | None) -> int:
    """Read every target once, keeping none: a bad line is refused before anything is probed."""
    try:
        return sum(1 for _ in _targets(args, shard))
    except OSError as exc:
        raise ValueError(f"--targets: {exc.strerror or exc}") from None


def run_probe(args: argparse.Namespace) -> int:
    import trio
    from rich.console import Console

    from . import report as reports
    from .campaign import Pacer, parse_shard
    from .runner import RunOptions, count_probes, run_suite
    from .suite import load_suite, shipped_suites

    err = Console(stderr=True, soft_wrap=True)
    if args.targets[:1] == ["merge"]:
        return run_merge(args)
    if args.list_suites:
        for name in shipped_suites():
            suite = load_suite(name)
            print(f"{name:10} {suite.description}")
        return EXIT_OK
    try:
        suite = load_suite(args.suite or ("quic" if args.quic else "default"))
        if args.quic and suite.transport != "quic":
            raise ValueError(f"suite {suite.name} is a TCP suite; --quic needs a QUIC one (--suite quic)")
        if args.check:
            suite.checks = list(args.check)
            from .checks import CHECK_IDS

            bad = [c for c in suite.checks if c not in CHECK_IDS]
            if bad:
                raise ValueError(f"unknown check(s) {', '.join(bad)}; known: {', '.join(CHECK_IDS)}")
        if args.profile:
            from .profiles import build_probe_hello

            build_probe_hello(args.profile, "probe.invalid")  # fails here, not mid-run, on a bad profile
            suite.profile = args.profile
        if args.attempts is not None:
            suite.attempts = max(1, min(10, args.attempts))
        if args.timeout is not None:
            suite.timeout = max(0.1, min(120.0, args.timeout))
        if args.pause is not None:
            suite.pause = max(0.0, min(30.0, args.pause))
        if args.no_raw:
            suite.raw = "no"
        shard = parse_shard(args.shard) if args.shard else None
        pacer = Pacer(args.rate) if args.rate is not None else None
        count = _count_targets(args, shard)
        baseline = reports.read_baseline(args.baseline) if args.baseline else None
    except (ValueError, OSError) as exc:
        err.print(f"pqproxy probe: {exc}", markup=False, highlight=False)
        return EXIT_UNREACHABLE
    if not count and shard is None:
        err.print("pqproxy probe: give at least one TARGET (host:port) or --targets FILE")
        return EXIT_UNREACHABLE

    console = Console()
    options = RunOptions(concurrency=args.concurrency, pcap_dir=args.pcap, pacer=pacer)
    if not (args.junit or args.html or baseline is not None) and (args.quiet or not console.is_terminal):
        return _run_streamed(args, suite, options, shard, console)
    targets = [t for _, t in _targets(args, shard)]
    try:
        if args.quiet or not console.is_terminal:
            result = trio.run(run_suite, targets, suite, options)
        else:
            result = _run_with_progress(targets, suite, options, console, count_probes(suite))
    except RuntimeError as exc:  # tcpdump or raw probes asked for and impossible
        err.print(f"pqproxy probe: {exc}", markup=False, highlight=False)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        err.print("pqproxy probe: interrupted")
        return 130

    if baseline is not None:
        reports.apply_baseline(result, baseline)
    _show_and_write(args, result, console, baseline)
    return EXIT_OK if args.exit_zero else result.exit_code(baseline=baseline is not None)


def _run_streamed(args: argparse.Namespace, suite: Any, options: Any, shard: tuple[int, int] | None,
                  console: Any) -> int:
    """Each target's report written as it finishes (lines, --json), then forgotten: a campaign of any size."""
    import trio
    from rich.console import Console

    from . import report as reports
    from .campaign import JSONStream
    from .runner import new_report, run_stream

    head = new_report(suite)
    stream = JSONStream(args.json, head) if args.json else None
    say = reports.say_to(console)
    seen = {"unreachable": False, "broken": False}
    if not args.quiet:
        say(f"pqproxy probe suite={head.suite} started={head.started} version={head.version}")

    def done(t: Any) -> None:
        seen["unreachable"] |= not t.reachable
        seen["broken"] |= bool(t.diagnoses or t.failed_probes())
        if stream is not None:
            stream.add(t)
        if args.quiet:
            _quiet_line(t)
        else:
            reports.target_lines(t, say)
            say(reports.summary_text(t))

    try:
        trio.run(run_stream, _targets(args, shard), suite, options, done)
        if args.exit_zero:
            return EXIT_OK
    except RuntimeError as exc:
        Console(stderr=True, soft_wrap=True).print(f"pqproxy probe: {exc}", markup=False, highlight=False)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        Console(stderr=True, soft_wrap=True).print("pqproxy probe: interrupted")
        return 130
    finally:
        if stream is not None:
            stream.close([])
    return EXIT_UNREACHABLE if seen["unreachable"] else EXIT_BROKEN if seen["broken"] else EXIT_OK


def _quiet_line(t: Any) -> None:
    ids = ", ".join(d.id for d in t.diagnoses) or ("unreachable: " + (t.error or "") if not t.reachable
                                                    else "no breakage")
    ready = t.readiness.verdict if t.readiness else "-"
    print(f"{t.target}\t{ready}\t{ids}", flush=True)


def run_merge(args: argparse.Namespace) -> int:
    """``pqproxy probe merge FILE...``: one report from a campaign's shards, written where --json/--junit/--html
    say, shown as the probe shows one; the exit status of the whole campaign."""
    from rich.console import Console

    from .campaign import merge, read_report

    err = Console(stderr=True, soft_wrap=True)
    files = [Path(f) for f in args.targets[1:]]
    try:
        if not files:
            raise ValueError("probe merge: give the shards' --json reports")
        merged = merge([(str(f), read_report(f)) for f in files])
    except ValueError as exc:
        err.print(f"pqproxy {exc}", markup=False, highlight=False)
        return EXIT_UNREACHABLE
    _show_and_write(args, merged, Console())
    return merged.exit_code()


def _show_and_write(args: argparse.Namespace, result: Any, console: Any, baseline: Any = None) -> None:
    """A whole run's report: on the console (one line a target with --quiet), and where --json/--junit/--html say."""
    from . import report as reports

    if args.quiet:
        for t in result.targets:
            _quiet_line(t)
    else:
        reports.render_terminal(result, console, baseline=baseline)
    if args.json:
        reports.write_json(result, args.json)
    if args.junit:
        reports.write_junit(result, args.junit)
    if args.html:
        reports.write_html(result, args.html)


def _run_with_progress(targets: list[Any], suite: Any, options: Any, console: Any, per_target: int) -> Any:
    import trio
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .runner import run_suite

    with Progress(TextColumn("[bold]probing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("", total=per_target * len(targets))

        def on_result(target: Any, spec: Any, result: Any) -> None:
            progress.update(task, advance=1, description=f"{target} {spec.id}")

        options.on_result = on_result
        return trio.run(run_suite, targets, suite, options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pqproxy")
    sub = parser.add_subparsers(dest="command", required=True)
    add_probe_subparser(sub)
    args = parser.parse_args(["probe", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))
