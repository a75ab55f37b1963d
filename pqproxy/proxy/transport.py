"""A TCP connection as a trio stream with little Python per call: the sidecar's socket edge.

``trio.SocketStream`` makes every call a full checkpoint (one trip through the scheduler even when the
socket was ready) and runs a conflict detector, a context manager and a method wrapper around each
syscall: about 6 µs a call where the syscall itself is 1 µs, and a proxied connection makes some fifteen.
Here a call tries the syscall first and only waits (``wait_readable``/``wait_writable``, which are
checkpoints) when the kernel says EAGAIN. A call that did not have to wait is not a checkpoint, except
every ``CHECKPOINT_EVERY``-th one, so a connection whose peer never lets it wait still yields to the others
and still sees its deadline.

Errors follow ``trio.SocketStream``: a failed syscall is ``trio.BrokenResourceError`` (with the OSError as
its cause), a call after ``close`` is ``trio.ClosedResourceError``. Unlike trio's streams, no
TCP_NOTSENT_LOWAT (nor does Node): with trio's 16 KiB a bulk transfer woke the sender several times as often,
1.1-1.7 s of CPU per GiB against 1.1-1.2 s without; the kernel's send buffer (tcp_wmem) bounds what waits.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct

import trio
from trio.lowlevel import checkpoint, notify_closing, wait_readable, wait_writable

CHECKPOINT_EVERY = 16
_LINGER_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}: close() sends RST
DEFAULT_RECEIVE = 64 * 1024


class TCPTransport(trio.abc.HalfCloseableStream):
    __slots__ = ("_closed", "_ready", "_shut", "peer", "socket")

    def __init__(self, sock: socket.socket, peer: tuple[str, int] | None = None) -> None:
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as trio's and Node's streams do
        self.socket = sock
        self.peer = peer  # the address accept() gave, so that nobody needs a getpeername() for the log line
        self._ready = 0  # calls in a row that did not wait
        self._closed = False
        self._shut = False

    def _broken(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._closed:
            return trio.ClosedResourceError("the connection was closed")
        return trio.BrokenResourceError(f"socket connection broken: {exc}")

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        sock = self.socket
        while True:
            try:
                data = sock.recv(max_bytes or DEFAULT_RECEIVE)
            except BlockingIOError:
                self._ready = 0
                await wait_readable(sock)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            break
        self._ready += 1
        if self._ready >= CHECKPOINT_EVERY:
            self._ready = 0
            await checkpoint()
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.socket
        if self._shut:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._broken(exc) from exc
        if sent < len(data):
            view = memoryview(data)[sent:]
            while view:
                self._ready = 0
                await wait_writable(sock)
                try:
                    sent = sock.send(view)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise self._broken(exc) from exc
                view = view[sent:]
            return
        self._ready += 1
        if self._ready >= CHECKPOINT_EVERY:
            self._ready = 0
            await checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await wait_writable(self.socket)

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the connection was closed")
        if self._shut:
            return
        self._shut = True
        try:
            self.socket.shutdown(socket.SHUT_WR)
        except OSError as exc:
            if exc.errno == errno.ENOTCONN:  # the peer is gone already (it reset): there is no FIN to send
                return
            raise self._broken(exc) from exc

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN (SO_LINGER 0): the peer reads an error (ECONNRESET), never a
        clean end. For a connection whose other half did not end cleanly. Safe to call twice."""
        if not self._closed:
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass  # the connection is gone already: close is all that is left
            self.close()

    def close(self) -> None:
        """Close now; a task waiting on this socket gets ClosedResourceError. Safe to call twice."""
        if not self._closed:
            self._closed = True
            notify_closing(self.socket)
            self.socket.close()

    async def aclose(self) -> None:
        self.close()
        await checkpoint()


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening socket that several worker processes can share (SO_REUSEPORT): the kernel
    spreads new connections across them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


# accept(2): "Linux accept() passes already-pending network errors on the new socket as an error code from
# accept() ... the application should detect the network errors defined for the protocol after accept() and
# treat them like EAGAIN by retrying" (and a firewall can give EPERM). One client's trouble, not ours.
_RETRY_ACCEPT = frozenset(getattr(errno, name) for name in (
    "EPERM", "ECONNABORTED", "EPROTO", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
    "EOPNOTSUPP", "ENETUNREACH", "ENOSR", "ESOCKTNOSUPPORT", "EPROTONOSUPPORT", "ETIMEDOUT", "ECONNRESET",
) if hasattr(errno, name))


async def accept(listener: socket.socket) -> TCPTransport:
    """The next connection of a listening socket. A network error of one pending connection is skipped (as
    accept(2) asks, and as trio's SocketListener does); others (EMFILE, ...) are raised as OSError."""
    while True:
        try:
            sock, address = listener.accept()
        except BlockingIOError:
            await wait_readable(listener)
            continue
        except OSError as exc:
            if exc.errno in _RETRY_ACCEPT:
                await checkpoint()  # never a busy loop, whatever the kernel keeps saying
                continue
            raise
        return TCPTransport(sock, (str(address[0]), int(address[1])))


async def connect(host: str, port: int) -> TCPTransport:
    """A TCP connection to host:port. An IP address (the usual upstream: a sidecar's service is on loopback)
    is connected directly; ``trio.open_tcp_stream``'s resolver and happy-eyeballs nursery cost about 5% of a
    worker's CPU per connection, for nothing to choose between. A name goes through it.

    Errors are OSError with the errno of the failed connect (ECONNREFUSED, ETIMEDOUT, ...)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        stream = await trio.open_tcp_stream(host, port)
        return TCPTransport(socket.socket(fileno=stream.socket.detach()))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        error = sock.connect_ex((host, port))
        if error in (errno.EINPROGRESS, errno.EAGAIN):
            # On loopback the three-way handshake has usually finished by the time connect() returns; asking
            # again (EISCONN: connected) is one syscall where waiting for writability is two and a task switch.
            error = sock.connect_ex((host, port))
            if error == errno.EISCONN:
                error = 0
            elif error in (errno.EALREADY, errno.EINPROGRESS, errno.EAGAIN):
                await wait_writable(sock)
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, f"connect to {host}:{port}: {os.strerror(error)}")
    except BaseException:
        sock.close()
        raise
    return TCPTransport(sock)
