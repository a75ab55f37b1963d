"""The sidecar's socket edge (pqproxy/proxy/transport.py): trio.SocketStream's behaviour without its cost.

What must hold although a ready call is not a checkpoint: a peer that never lets us wait cannot starve
the other tasks or outrun a deadline; errors are trio's stream errors; close wakes a waiting task.
"""

from __future__ import annotations

import errno
import socket

import pytest
import trio

from pqproxy.proxy.transport import CHECKPOINT_EVERY, TCPTransport, accept, connect, listening_socket


async def _pair() -> tuple[TCPTransport, TCPTransport, socket.socket]:
    listener = listening_socket("127.0.0.1", 0, 16)
    port = listener.getsockname()[1]
    client = await connect("127.0.0.1", port)
    server = await accept(listener)
    return client, server, listener


async def test_bytes_both_ways_half_close_and_peer_address() -> None:
    client, server, listener = await _pair()
    with listener:
        assert server.peer == client.socket.getsockname()[:2]
        await client.send_all(b"hello")
        assert await server.receive_some(100) == b"hello"
        await client.send_eof()
        assert await server.receive_some(100) == b""  # EOF, and the other direction still works:
        await server.send_all(b"back")
        assert await client.receive_some(100) == b"back"
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"after eof")
        client.close()
        server.close()


async def test_a_large_write_waits_for_the_reader_and_arrives_whole() -> None:
    client, server, listener = await _pair()
    with listener:
        payload = bytes(range(256)) * (16 * 1024)  # 4 MiB, far beyond the socket buffers
        got = bytearray()

        async def read_all() -> None:
            while len(got) < len(payload):
                data = await server.receive_some(65536)
                assert data
                got.extend(data)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await client.send_all(payload)
        assert bytes(got) == payload
        client.close()
        server.close()


async def test_connect_refused_is_an_oserror_with_its_errno() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(OSError) as caught:
            await connect("127.0.0.1", port)
    assert caught.value.errno == errno.ECONNREFUSED
    assert "Connection refused" in str(caught.value)


async def test_a_reset_is_broken_resource_and_use_after_close_is_closed_resource() -> None:
    client, server, listener = await _pair()
    with listener:
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        server.close()  # linger 0: an RST
        await trio.sleep(0.05)
        with pytest.raises(trio.BrokenResourceError):
            await client.receive_some(100)
        client.close()
        client.close()  # twice is fine
        with pytest.raises(trio.ClosedResourceError):
            await client.send_all(b"x")
        with pytest.raises(trio.ClosedResourceError):
            await client.send_eof()


async def test_close_wakes_a_task_waiting_to_read() -> None:
    client, server, listener = await _pair()
    with listener:
        async with trio.open_nursery() as nursery:
            failed: list[type[BaseException]] = []

            async def wait_for_data() -> None:
                try:
                    await server.receive_some(100)
                except trio.ClosedResourceError as exc:
                    failed.append(type(exc))

            nursery.start_soon(wait_for_data)
            await trio.sleep(0.05)
            server.close()
        assert failed == [trio.ClosedResourceError]
        client.close()


async def test_a_peer_that_never_lets_us_wait_neither_starves_others_nor_escapes_cancellation() -> None:
    client, server, listener = await _pair()
    with listener:
        await client.send_all(b"x" * 65536)  # far more than we read: every receive below is ready at once
        reads = 0
        reader = trio.CancelScope()

        async def other_task() -> None:
            for _ in range(5):  # runs only when the reader yields ...
                await trio.sleep(0)
            reader.cancel()  # ... and then cancels it

        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_task)
            with reader:
                while True:
                    assert await server.receive_some(1) == b"x"
                    reads += 1
        assert reader.cancelled_caught
        # Without the periodic checkpoint the reader would have drained all 65536 bytes before anyone else ran.
        assert reads <= 8 * CHECKPOINT_EVERY
        client.close()
        server.close()


async def test_accept_skips_one_connections_network_error_and_raises_the_rest() -> None:
    listener = listening_socket("127.0.0.1", 0, 16)
    with listener:
        client = await connect("127.0.0.1", listener.getsockname()[1])

        class Flaky:
            """accept(2) as Linux can give it: a pending network error first, then the connection."""

            def __init__(self, first_error: int) -> None:
                self.errors = [OSError(first_error, "injected")]

            def accept(self) -> tuple[socket.socket, tuple[str, int]]:
                if self.errors:
                    raise self.errors.pop()
                return listener.accept()

            def fileno(self) -> int:
                return listener.fileno()

        server = await accept(Flaky(errno.ECONNABORTED))  # type: ignore[arg-type]
        assert server.peer == client.socket.getsockname()[:2]
        server.close()
        with pytest.raises(OSError) as caught:
            await accept(Flaky(errno.EMFILE))  # type: ignore[arg-type]
        assert caught.value.errno == errno.EMFILE
        client.close()


async def test_a_host_name_is_resolved_and_connected() -> None:
    listener = listening_socket("127.0.0.1", 0, 16)
    with listener:
        client = await connect("localhost", listener.getsockname()[1])  # through trio's resolver
        server = await accept(listener)
        await client.send_all(b"by name")
        assert await server.receive_some(100) == b"by name"
        assert client.socket.gettimeout() == 0.0  # non-blocking, as every TCPTransport
        client.close()
        server.close()
