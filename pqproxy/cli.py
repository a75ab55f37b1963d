"""One entry point: ``pqproxy server|client|certs`` (more subcommands come with later layers)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial

import trio

from . import __version__


def host_port(text: str) -> tuple[str, int]:
    """'H:P', '[v6]:P' or ':P' (all interfaces) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def _groups(text: str) -> tuple[int, ...]:
    from .tls.groups import parse_group_list

    try:
        return parse_group_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _suites(text: str) -> tuple[int, ...]:
    from .tls.key_schedule import cipher_suite_by_name

    try:
        return tuple(cipher_suite_by_name(n).code for n in text.replace(":", ",").split(",") if n.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _alpn(text: str) -> tuple[bytes, ...]:
    return tuple(p.strip().encode() for p in text.split(",") if p.strip())


def _add_tls_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--groups", type=_groups, metavar="LIST",
                   help="key exchange groups in preference order, IANA names, comma-separated "
                        "(default: X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024,MLKEM768,MLKEM1024,"
                        "X25519,secp256r1,secp384r1)")
    p.add_argument("--ciphers", type=_suites, metavar="LIST", help="TLS 1.3 cipher suites in preference order")
    p.add_argument("--alpn", type=_alpn, metavar="LIST", help="ALPN protocols, comma-separated")
    p.add_argument("--handshake-timeout", type=float, default=10.0, metavar="S", help="seconds (default 10)")
    p.add_argument("--connect-timeout", type=float, default=5.0, metavar="S", help="seconds (default 5)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pqproxy",
        description="Quantum-safe TLS 1.3 sidecar (X25519+ML-KEM hybrid key exchange).",
    )
    parser.add_argument("--version", action="version", version=f"pqproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = sub.add_parser("server", help="terminate TLS 1.3 and forward plain TCP to an upstream")
    server.add_argument("--listen", type=host_port, required=True, metavar="H:P")
    server.add_argument("--upstream", type=host_port, required=True, metavar="H:P")
    server.add_argument("--cert", required=True, metavar="FILE", help="certificate chain (PEM, leaf first)")
    server.add_argument("--key", required=True, metavar="FILE", help="private key (PEM)")
    server.add_argument("--require-hybrid", action="store_true",
                        help="refuse clients that offer no hybrid or ML-KEM group (alert insufficient_security)")
    server.add_argument("--client-ca", metavar="FILE", help="require client certificates issued by this CA (mTLS)")
    server.add_argument("--max-client-hello", type=int, default=64 * 1024, metavar="BYTES",
                        help="largest ClientHello accepted (default 65536)")
    _add_tls_options(server)
    server.set_defaults(func=run_server)

    client = sub.add_parser("client", help="accept plain TCP and originate TLS 1.3 to a remote server")
    client.add_argument("--listen", type=host_port, required=True, metavar="H:P")
    client.add_argument("--connect", type=host_port, required=True, metavar="H:P")
    client.add_argument("--sni", metavar="NAME", help="server name to send and verify (default: the --connect host)")
    trust = client.add_mutually_exclusive_group(required=True)
    trust.add_argument("--ca", metavar="FILE", help="CA bundle to verify the server with")
    trust.add_argument("--insecure", action="store_true", help="do not verify the server (testing only)")
    client.add_argument("--cert", metavar="FILE", help="client certificate for mutual TLS")
    client.add_argument("--key", metavar="FILE", help="client private key for mutual TLS")
    _add_tls_options(client)
    client.set_defaults(func=run_client)

    try:
        from .certs import add_certs_subparser
    except ImportError:  # pragma: no cover
        pass
    else:
        add_certs_subparser(sub)
    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper()), format="%(message)s")


def _fail(message: str) -> int:
    print(f"pqproxy: {message}", file=sys.stderr)
    return 2


def run_server(args: argparse.Namespace) -> int:
    from .proxy.sidecar import SidecarSettings, handle_server_connection, serve
    from .tls.certificates import CertificateChain, load_trust_store
    from .tls.config import TLSConfig

    _setup_logging(args.log_level)
    try:
        chain = CertificateChain.load(args.cert, args.key)
        trust = load_trust_store(args.client_ca) if args.client_ca else None
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    kwargs: dict[str, object] = {}
    if args.groups:
        kwargs["groups"] = args.groups
    if args.ciphers:
        kwargs["cipher_suites"] = args.ciphers
    config = TLSConfig(
        certificate_chain=chain, trust_store=trust, require_client_certificate=trust is not None,
        require_post_quantum=args.require_hybrid, alpn_protocols=args.alpn or (),
        max_client_hello_size=args.max_client_hello, **kwargs,  # type: ignore[arg-type]
    )
    settings = SidecarSettings(args.listen, args.upstream, config, args.handshake_timeout, args.connect_timeout)
    return _run(partial(serve, settings, handle_server_connection))


def run_client(args: argparse.Namespace) -> int:
    from .proxy.sidecar import SidecarSettings, handle_client_connection, serve
    from .tls.certificates import CertificateChain, load_trust_store
    from .tls.config import TLSConfig

    _setup_logging(args.log_level)
    if bool(args.cert) != bool(args.key):
        return _fail("--cert and --key go together")
    try:
        trust = load_trust_store(args.ca) if args.ca else None
        chain = CertificateChain.load(args.cert, args.key) if args.cert else None
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    kwargs: dict[str, object] = {}
    if args.groups:
        kwargs["groups"] = args.groups
    if args.ciphers:
        kwargs["cipher_suites"] = args.ciphers
    config = TLSConfig(
        server_name=args.sni or args.connect[0], trust_store=trust, verify_peer=not args.insecure,
        certificate_chain=chain, alpn_protocols=args.alpn or (), **kwargs,  # type: ignore[arg-type]
    )
    settings = SidecarSettings(args.listen, args.connect, config, args.handshake_timeout, args.connect_timeout)
    return _run(partial(serve, settings, handle_client_connection))


def _run(main: partial[object]) -> int:
    try:
        trio.run(main)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return _fail(str(exc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
