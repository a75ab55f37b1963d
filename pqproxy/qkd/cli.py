"""``pqproxy kme``: the KME simulator from the command line."""

from __future__ import annotations

import argparse
import functools
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def add_kme_subparser(sub: Any) -> None:
    p = sub.add_parser(
        "kme", help="a KME simulator: the ETSI GS QKD 014 API over mutual TLS, fed by a simulated QKD link",
        description="Serve the ETSI GS QKD 014 key delivery API over mutual TLS for the SAEs given, as the KMEs of "
        "two sites joined by a decoy-state BB84 link over fibre (key rate and QBER from the link's physics; an "
        "eavesdropper raises the QBER, and above the abort threshold the link makes no key). The SAE is the CN "
        "of its client certificate.")
    p.add_argument("--listen", type=_address, default=("127.0.0.1", 8443), metavar="H:P",
                   help="the API (default 127.0.0.1:8443)")
    p.add_argument("--sae", action="append", metavar="ID", help="an SAE ID (repeat: at least two)")
    p.add_argument("--topology", type=Path, metavar="FILE",
                   help="a network instead of one link: sites (each its own KME at its own address), QKD links, "
                        "pairs' excluded trusted nodes (TOML; see pqproxy/qkd/network.py); keys between sites with "
                        "no direct link are relayed through trusted nodes")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="write ca.pem, kme.pem/kme.key and <sae>.pem/<sae>.key here (kept if already there)")
    p.add_argument("--cert", metavar="FILE", help="the KME's server certificate (instead of --out)")
    p.add_argument("--key", metavar="FILE", help="its private key")
    p.add_argument("--ca", metavar="FILE", help="the CA that issues the SAEs' client certificates")
    p.add_argument("--control", type=_address, metavar="H:P",
                   help="plain HTTP endpoint of the simulation (GET /link, POST /eavesdropper); loopback only")
    p.add_argument("--key-size", type=int, default=256, help="bits per key (default 256)")
    p.add_argument("--max-key-count", type=int, default=1000, help="keys a pool holds at most (default 1000)")
    p.add_argument("--initial-keys", type=int, metavar="N", help="keys each pool holds at the start (default: full)")
    p.add_argument("--recovery-s", type=float, default=2.0,
                   help="seconds the link needs to come back after a disturbance ends (default 2)")
    p.add_argument("--length-km", type=float, default=20.0, help="fibre length (default 20)")
    p.add_argument("--loss-db-km", type=float, default=0.2, help="fibre loss, dB/km (default 0.2)")
    p.add_argument("--detector-efficiency", type=float, default=0.10, help="(default 0.10)")
    p.add_argument("--dark-count", type=float, default=1e-6, help="dark count probability per pulse (default 1e-6)")
    p.add_argument("--pulse-rate", type=float, default=100e6, help="pulses per second (default 1e8)")
    p.add_argument("--eavesdropper", type=float, default=0.0, metavar="FRACTION",
                   help="intercept-resend on this fraction of pulses from the start (default 0)")
    p.set_defaults(func=run_kme)


def _pki(args: argparse.Namespace) -> tuple[str, str, str]:
    if args.cert or args.key or args.ca:
        if not (args.cert and args.key and args.ca):
            raise SystemExit("pqproxy kme: --cert, --key and --ca go together")
        return args.cert, args.key, args.ca
    if args.out is None:
        raise SystemExit("pqproxy kme: give --out DIR (a PKI is written there) or --cert, --key and --ca")
    from ..certs import write_kme_pki

    wanted = [args.out / f"{n}.pem" for n in ("ca", "kme", *args.sae)]
    if not all(p.exists() for p in wanted):
        write_kme_pki(args.out, args.sae, server_names=("localhost", "127.0.0.1", args.listen[0]))
    return str(args.out / "kme.pem"), str(args.out / "kme.key"), str(args.out / "ca.pem")


def _control_on_loopback(args: argparse.Namespace) -> bool:
    if args.control is not None and not (args.control[0].startswith("127.") or args.control[0] in ("::1", "localhost")):
        print("pqproxy kme: --control has no authentication: it must listen on loopback", file=sys.stderr)
        return False
    return True


def _serve_until_signal(serve: Callable[..., Awaitable[None]],
                        ready: Callable[[dict[str, tuple[str, int]]], dict[str, Any]]) -> None:
    """Run ``serve`` (a trio server that reports its bound addresses) until SIGTERM or SIGINT; print the ``ready``
    line (JSON) once it listens."""
    import trio

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(serve)
            print(json.dumps(ready(bound)), flush=True)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)


def run_kme(args: argparse.Namespace) -> int:
    if args.topology is not None:
        return run_network(args)
    if not args.sae:
        print("pqproxy kme: give --sae (at least two) for one link, or --topology FILE for a network", file=sys.stderr)
        return 2

    from .kme import KeyStore, serve_kme, server_context
    from .link import Link, LinkParameters

    saes = list(dict.fromkeys(args.sae))
    if len(saes) < 2:
        print("pqproxy kme: at least two --sae are needed (a master and a slave)", file=sys.stderr)
        return 2
    if not _control_on_loopback(args):
        return 2
    if args.key_size % 8 or not 64 <= args.key_size <= 8192:
        print("pqproxy kme: --key-size must be a multiple of 8 between 64 and 8192", file=sys.stderr)
        return 2
    try:
        parameters = LinkParameters(length_km=args.length_km, loss_db_per_km=args.loss_db_km,
                                    detector_efficiency=args.detector_efficiency, dark_count=args.dark_count,
                                    pulse_rate_hz=args.pulse_rate, recovery_s=args.recovery_s)
        link = Link(parameters, time.monotonic())
        link.set_eavesdropper(args.eavesdropper, time.monotonic())
        cert, key, ca = _pki(args)
        context = server_context(cert, key, ca)
    except (ValueError, OSError) as exc:
        print(f"pqproxy kme: {exc}", file=sys.stderr)
        return 2
    store = KeyStore(saes, link, key_size=args.key_size, max_key_count=args.max_key_count,
                     initial_keys=args.initial_keys)

    _serve_until_signal(
        functools.partial(serve_kme, args.listen[0], args.listen[1], store, context, control=args.control),
        lambda bound: {"event": "kme_ready", "listen": "{}:{}".format(*bound["kme"]),
                       "control": "{}:{}".format(*bound["control"]) if "control" in bound else None,
                       "saes": saes, "ca": ca, "link": store.status(saes[0], saes[1]).status_extension})
    return 0


def run_network(args: argparse.Namespace) -> int:
    """``pqproxy kme --topology FILE --out DIR``: every site's KME, and the control endpoint."""
    import tomllib

    from ..certs import write_kme_pki
    from .network import Network, TopologyError, parse_topology
    from .network_kme import serve_network

    if args.out is None:
        print("pqproxy kme: --topology needs --out DIR (the network's PKI is written there)", file=sys.stderr)
        return 2
    if not _control_on_loopback(args):
        return 2
    try:
        topology = parse_topology(tomllib.loads(args.topology.read_text()), str(args.topology))
    except (OSError, tomllib.TOMLDecodeError, TopologyError) as exc:
        print(f"pqproxy kme: {exc}", file=sys.stderr)
        return 2
    saes = [sae for site in topology.sites for sae in site.saes]
    sites = {s.name: ("localhost", "127.0.0.1", s.listen[0]) for s in topology.sites}
    wanted = [args.out / f"{n}.pem" for n in ("ca", *saes, *(f"kme-{s}" for s in sites))]
    if not all(p.exists() for p in wanted):
        write_kme_pki(args.out, saes, sites=sites)
    network = Network(topology)

    _serve_until_signal(
        functools.partial(serve_network, network, args.out, control=args.control),
        lambda bound: {"event": "kme_ready",
                       "sites": {k: "{}:{}".format(*v) for k, v in bound.items() if k != "control"},
                       "control": "{}:{}".format(*bound["control"]) if "control" in bound else None,
                       "links": [ln.spec.name for ln in network.links.values()], "ca": str(args.out / "ca.pem")})
    return 0
