"""One entry point: ``pqproxy server|client|kme|probe|lab|certs|bench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="TOML configuration; flags override its keys")
    p.add_argument("--groups", metavar="LIST",
                   help="key exchange groups in preference order, IANA names, comma-separated "
                        "(default: X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024,MLKEM768,MLKEM1024,"
                        "X25519,secp256r1,secp384r1,secp521r1,x448)")
    p.add_argument("--ciphers", metavar="LIST", help="TLS 1.3 cipher suites in preference order")
    p.add_argument("--signature-algorithms", metavar="LIST",
                   help="signature schemes to offer and accept, IANA names, comma-separated (default: all we "
                        "verify; ML-DSA (mldsa44,mldsa65,mldsa87) only when a trust anchor or our own "
                        "certificate has an ML-DSA key)")
    p.add_argument("--alpn", type=_csv, metavar="LIST", help="ALPN protocols, comma-separated")
    p.add_argument("--admin", metavar="H:P", help="serve /metrics, /healthz and /readyz here")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes sharing the port (SO_REUSEPORT); 0 = one per CPU")
    p.add_argument("--handshake-timeout", type=float, metavar="S", help="seconds (default 10)")
    p.add_argument("--idle-timeout", type=float, metavar="S", help="close after S seconds with no bytes (default 300)")
    p.add_argument("--connect-timeout", type=float, metavar="S", help="seconds (default 5)")
    p.add_argument("--max-connections", type=int, metavar="N", help="per worker (default 10000)")
    p.add_argument("--drain-timeout", type=float, metavar="S",
                   help="on SIGTERM, seconds open connections get to finish (default 30)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--verify-profile", choices=("rfc5280", "webpki"),
                   help="rules the peer's certificate chain is held to: rfc5280 (default; as OpenSSL and Go check "
                        "private CAs: keyUsage and extendedKeyUsage checked when present) or webpki (the "
                        "CA/Browser Forum profile: keyUsage required on CAs, SAN on every leaf)")
    q = p.add_argument_group("QKD keying (ETSI GS QKD 014; the same keys in a [qkd] table of the TOML file)")
    q.add_argument("--qkd", choices=["off", "prefer", "require"],
                   help="key each handshake with a QKD key too: prefer (without one, carry on hybrid-only and count "
                        "it as degraded) or require (without one, refuse)")
    q.add_argument("--qkd-kme", metavar="URL", help="our KME, https://host:port")
    q.add_argument("--qkd-sae-id", metavar="ID", help="our SAE ID (the CN of --qkd-cert)")
    q.add_argument("--qkd-peer", metavar="ID",
                   help="client: the server sidecar's SAE ID; server: the only client SAE accepted")
    q.add_argument("--qkd-cert", metavar="FILE", help="our SAE certificate for mutual TLS to the KME")
    q.add_argument("--qkd-key", metavar="FILE", help="its private key")
    q.add_argument("--qkd-ca", metavar="FILE", help="the KME's CA")


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqproxy",
        description="Quantum-safe TLS 1.3 sidecar (X25519+ML-KEM hybrid key exchange), and a probe suite for the "
        "middleboxes that break on post-quantum ClientHellos.",
    )
    parser.add_argument("--version", action="version", version=f"pqproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = sub.add_parser(
        "server", help="terminate TLS 1.3 and forward plain TCP to an upstream",
        description="Terminate TLS 1.3 (hybrid post-quantum key exchange) in front of a plain TCP upstream. "
                    "SIGHUP reloads certificates and configuration; SIGTERM drains.")
    server.add_argument("--listen", metavar="H:P")
    server.add_argument("--upstream", metavar="H:P")
    server.add_argument("--cert", metavar="FILE", help="certificate chain (PEM, leaf first)")
    server.add_argument("--key", metavar="FILE", help="private key (PEM)")
    server.add_argument("--require-hybrid", action="store_true", default=None,
                        help="refuse clients that offer no hybrid or ML-KEM group (alert insufficient_security)")
    server.add_argument("--client-ca", metavar="FILE", help="require client certificates issued by this CA (mTLS)")
    server.add_argument("--allowed-name", dest="allowed_names", action="append", metavar="NAME",
                        help="with --client-ca: accept only client certificates with this CN or DNS name "
                             "(repeat; *.example.com allowed)")
    server.add_argument("--proxy-protocol", action="store_true", default=None,
                        help="send a PROXY protocol v2 header (client address, TLS facts) to the upstream")
    server.add_argument("--upstream-connect", choices=("handshake", "first-data"),
                        help="connect the upstream once the handshake is done (default), or only when the client "
                             "sends its first bytes (not for protocols where the server speaks first)")
    server.add_argument("--legacy-tls12", action="store_true", default=None,
                        help="serve TLS 1.2-only clients through OpenSSL (classical, logged as not quantum-safe) "
                             "instead of refusing them with protocol_version")
    server.add_argument("--max-client-hello", type=int, metavar="BYTES",
                        help="largest ClientHello accepted (default 131396, as OpenSSL)")
    server.add_argument("--ticket-key-file", metavar="FILE",
                        help="seed of the session-ticket keys, shared by replicas so a ticket from one resumes on "
                             "another (pqproxy ticket-key --out FILE makes one; re-read on SIGHUP)")
    _add_common(server)
    server.set_defaults(func=run_server)

    client = sub.add_parser(
        "client", help="accept plain TCP and originate TLS 1.3 to a remote server",
        description="Accept plain TCP beside an application and originate TLS 1.3 (hybrid post-quantum key "
                    "exchange) to a remote pqproxy server or any TLS 1.3 server.")
    client.add_argument("--listen", metavar="H:P")
    client.add_argument("--connect", metavar="H:P")
    client.add_argument("--sni", metavar="NAME", help="server name to send and verify (default: the --connect host)")
    client.add_argument("--ca", metavar="FILE", help="CA bundle to verify the server with")
    client.add_argument("--insecure", action="store_true", default=None,
                        help="do not verify the server (testing only)")
    client.add_argument("--cert", metavar="FILE", help="client certificate for mutual TLS")
    client.add_argument("--key", metavar="FILE", help="client private key for mutual TLS")
    client.add_argument("--resume-sessions", choices=("on", "off"),
                        help="resume sessions with the remote's tickets, each once (default on; never with --qkd): "
                             "a hybrid key exchange still, without the certificate chain")
    client.add_argument("--remote-connect", choices=("accept", "first-data"),
                        help="connect the remote server (and fetch the QKD key) when the application connects "
                             "(default), or only when it sends its first bytes (not for protocols where the "
                             "server speaks first)")
    _add_common(client)
    client.set_defaults(func=run_client)

    from .probe.cli import add_probe_subparser

    add_probe_subparser(sub)
    from .lab.cli import add_lab_subparser

    add_lab_subparser(sub)
    from .qkd.cli import add_kme_subparser

    add_kme_subparser(sub)
    ticket_key = sub.add_parser(
        "ticket-key", help="write a session-ticket key file for replicas to share (--ticket-key-file)",
        description="Write a new session-ticket key file (40 bytes: the hour and a random 32-byte seed of the "
                    "hourly key ratchet), mode 0600. Give every replica of a service the same file (a Kubernetes "
                    "Secret) and a ticket from one resumes on the others.")
    ticket_key.add_argument("--out", required=True, metavar="FILE", help="the file to write (never overwritten)")
    ticket_key.set_defaults(func=run_ticket_key)
    bench = sub.add_parser("bench", help="the benchmark harness (make bench): pqproxy against Node 26, side by side",
                           description="Run the benchmark harness of a pqproxy checkout (benchmarks/): the engine in "
                           "process, pqproxy server against the Node.js 26 sidecar, the CPU split inside the "
                           "sidecar, the default probe suite; writes benchmarks/results/bench.json. BENCH_QUICK=1 "
                           "for a smaller smoke run.")
    bench.set_defaults(func=run_bench)
    try:
        from .certs import add_certs_subparser
    except ImportError:  # pragma: no cover
        pass
    else:
        add_certs_subparser(sub)
    return parser


_NOT_SETTINGS = {"command", "func", "config"}


def _flags(args: argparse.Namespace) -> dict[str, object]:
    flags = {k: v for k, v in vars(args).items() if k not in _NOT_SETTINGS and v is not None}
    if "allowed_names" in flags:
        flags["allowed_names"] = tuple(flags["allowed_names"])
    if "max_client_hello" in flags:
        flags["max_client_hello"] = flags.pop("max_client_hello")
    return flags


def run_server(args: argparse.Namespace) -> int:
    from .proxy.supervisor import run

    return run("server", args.config, _flags(args))


def run_client(args: argparse.Namespace) -> int:
    from .proxy.supervisor import run

    return run("client", args.config, _flags(args))


def run_ticket_key(args: argparse.Namespace) -> int:
    from .proxy.ticket_keys import write_ticket_key_file

    try:
        write_ticket_key_file(args.out)
    except OSError as exc:
        print(f"pqproxy ticket-key: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(json.dumps({"event": "ticket_key_written", "path": args.out}))
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "benchmarks" / "run.py").exists():
        print("pqproxy bench: the harness lives in a checkout of pqproxy (benchmarks/); this install has none",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(checkout))
    from benchmarks.run import main as bench_main

    return int(bench_main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
