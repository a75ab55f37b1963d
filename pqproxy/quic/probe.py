"""One QUIC probe attempt: the hello in Initial datagrams over UDP, and what came back, as an ``Outcome``.

The hello is the probe profile's, made fit for QUIC (RFC 9001 §8): an empty legacy_session_id, ALPN
``h3``, and quic_transport_parameters with our Source Connection ID; a size, if the probe has one, is
kept by padding again afterwards. The datagrams go out of a connected UDP socket, back to back or with
the shape's pause between them, with fragmentation allowed (an uncut post-quantum hello is a datagram of
about 2 KB; on a 1500-byte path the kernel fragments it, as it would a browser's).

Outcomes: ``server_hello`` (a server Initial with the ServerHello: the group it chose, the cipher) or
``hello_retry_request``; ``retry`` when the server's Retry was followed once and nothing better came;
``version_negotiation``; ``alert`` (a CONNECTION_CLOSE with a TLS alert, 0x100 + alert); ``refused``
(ICMP port unreachable: nothing listens); ``timeout`` (nothing, or only what did not parse). Garbage,
datagrams for other connection IDs and packets that do not decrypt are counted in ``detail``, never raised.
At the end the probe sends CONNECTION_CLOSE, so the server stops retransmitting.
"""

from __future__ import annotations

import socket
import time

import trio

from ..probe import model
from ..probe.delivery import Shape
from ..probe.engine import Target
from ..probe.model import IcmpReport, Outcome
from ..probe.profiles import ProbeHello
from ..tls.alerts import TLSAlert
from ..tls.codepoints import ExtensionType
from ..tls.extensions import KeyShareHelloRetryRequest, KeyShareServerHello, ProtocolNameList, ext
from ..tls.groups import group_name
from ..tls.hello import pad_client_hello
from ..tls.key_schedule import CIPHER_SUITES
from ..tls.messages import Extension, ServerHello
from .initial import (
    ALPN_H3,
    MIN_DATAGRAM,
    ServerFlight,
    client_initials,
    connection_close,
    random_cid,
    transport_parameters,
)

RECEIVE = 65536
MAX_DATAGRAMS = 256  # datagrams we read in one attempt at most (a server's flight is a handful)
QUIC_TRANSPORT_PARAMETERS = 0x39


def quic_client_hello(probe: ProbeHello, scid: bytes, size: int | None) -> bytes:
    """The probe's hello as a QUIC client sends it (RFC 9001 §8), as a handshake message."""
    hello = probe.hello
    hello.legacy_session_id = b""
    alpn = ExtensionType.application_layer_protocol_negotiation
    kept = [e for e in hello.extensions if e.type not in (QUIC_TRANSPORT_PARAMETERS, alpn, ExtensionType.padding)]
    kept.append(ext(alpn, ProtocolNameList([ALPN_H3])))
    kept.append(Extension(QUIC_TRANSPORT_PARAMETERS, transport_parameters(scid)))
    hello.extensions = kept
    if size is not None:
        pad_client_hello(hello, size)
    return hello.encode()


def _read_server_hello(message: bytes) -> Outcome:
    try:
        hello = ServerHello.decode(message[4:])
    except TLSAlert as exc:
        return Outcome(model.NOT_TLS, detail=f"a ServerHello that does not parse: {exc}")
    retry = hello.is_hello_retry_request
    group = None
    for e in hello.extensions:
        if e.type == ExtensionType.key_share:
            try:
                code = (KeyShareHelloRetryRequest.decode(e.data).selected_group if retry
                        else KeyShareServerHello.decode(e.data).server_share.group)
                group = group_name(code)
            except TLSAlert:
                group = None
    suite = CIPHER_SUITES.get(hello.cipher_suite)
    cipher = suite.name if suite is not None else f"0x{hello.cipher_suite:04x}"
    return Outcome(model.HELLO_RETRY_REQUEST if retry else model.SERVER_HELLO, group=group, cipher=cipher)


async def run_quic_attempt(target: Target, probe: ProbeHello, shape: Shape, *, size: int | None, pause: float,
                           timeout: float) -> Outcome:
    started = time.monotonic()
    dcid, scid = random_cid(), random_cid()
    hello = quic_client_hello(probe, scid, size)
    sock = trio.socket.socket(socket.AF_INET6 if ":" in target.host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if hasattr(socket, "IP_MTU_DISCOVER") and ":" not in target.host:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MTU_DISCOVER, getattr(socket, "IP_PMTUDISC_DONT", 0))
        await sock.connect((target.host, target.port))
        local_port = sock.getsockname()[1]
        outcome = await _exchange(sock, hello, dcid, scid, shape, pause, timeout)
    except OSError as exc:
        outcome = Outcome(model.UNREACHABLE, detail=str(exc))
        local_port = None
    finally:
        sock.close()
    outcome.elapsed_ms = (time.monotonic() - started) * 1000
    outcome.local_port = local_port
    return outcome


async def _exchange(sock: trio.socket.SocketType, hello: bytes, dcid: bytes, scid: bytes, shape: Shape,
                    pause: float, timeout: float) -> Outcome:
    cuts = shape.numbers
    reorder = shape.kind == "quic-reorder"
    datagram_size = shape.pad or MIN_DATAGRAM
    flight = ServerFlight(dcid, scid)
    token = b""
    followed_retry = False
    received = 0
    datagrams = 0
    next_packet = 0
    current_dcid = dcid
    deadline = trio.current_time() + timeout
    while True:
        sent = client_initials(hello, current_dcid, scid, cuts=cuts, reorder=reorder,
                               one_packet=shape.kind == "quic-frames", datagram_size=datagram_size, token=token,
                               first_packet_number=next_packet)
        next_packet += len(sent)
        for i, datagram in enumerate(sent):
            if i and pause:
                await trio.sleep(pause)
            await sock.send(datagram)
        retry_seen = False
        with trio.move_on_at(deadline):
            while datagrams < MAX_DATAGRAMS:
                try:
                    data = await sock.recv(RECEIVE)
                except ConnectionRefusedError:
                    return Outcome(model.REFUSED, icmp=IcmpReport(3, 3, "", "destination-unreachable/port"),
                                   detail="ICMP port unreachable: nothing listens on this UDP port")
                datagrams += 1
                received += len(data)
                flight.feed(data)
                if flight.versions is not None:
                    return Outcome(model.VERSION_NEGOTIATION, bytes_received=received,
                                   detail=f"the server offers versions {[hex(v) for v in flight.versions]}")
                if flight.retry_token is not None and not followed_retry:
                    retry_seen = True
                    break
                message = flight.server_hello()
                if message is not None:
                    outcome = _read_server_hello(message)
                    outcome.bytes_received = received
                    outcome.hello_retry = outcome.kind == model.HELLO_RETRY_REQUEST
                    if followed_retry:
                        outcome.detail = "after a Retry"
                    await _close(sock, current_dcid, flight, scid, next_packet)
                    return outcome
                if flight.close_error is not None:
                    return _closed(flight, received)
        if retry_seen:
            # RFC 9000 §8.1.2: the same hello again, with the token, to the Retry's connection ID, whose
            # Initial keys are derived from that ID.
            followed_retry = True
            token, current_dcid = flight.retry_token or b"", flight.retry_scid or dcid
            flight = ServerFlight(current_dcid, scid)
            continue
        break
    notes = f"{datagrams} datagram(s), {flight.malformed} unreadable" if datagrams else "no answer"
    kind = model.RETRY if followed_retry and not flight.initial_packets else model.TIMEOUT
    return Outcome(kind, bytes_received=received, detail=f"{notes} within {timeout:g}s")


def _closed(flight: ServerFlight, received: int) -> Outcome:
    code = flight.close_error or 0
    if 0x100 <= code <= 0x1FF:
        from ..tls.alerts import AlertDescription

        try:
            name = AlertDescription(code - 0x100).name
        except ValueError:
            name = f"alert {code - 0x100}"
        return Outcome(model.ALERT, alert=name, bytes_received=received, detail="CONNECTION_CLOSE (crypto error)")
    return Outcome(model.FIN, bytes_received=received, detail=f"CONNECTION_CLOSE with error 0x{code:x}")


async def _close(sock: trio.socket.SocketType, dcid_original: bytes, flight: ServerFlight, scid: bytes,
                 packet_number: int) -> None:
    if flight.server_cid is None:
        return
    try:
        await sock.send(connection_close(dcid_original, flight.server_cid, scid, packet_number))
    except OSError:
        pass
