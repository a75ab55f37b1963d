"""The plain service behind the lab's TLS servers: echoes what it reads, half-closes after its peer does.

``python -m pqproxy.lab.echo HOST:PORT``, one thread per connection, at most ``MAX_CONNECTIONS`` at once;
a connection quiet for ``IDLE_TIMEOUT`` seconds is closed.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading

IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 512
_slots = threading.BoundedSemaphore(MAX_CONNECTIONS)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        if not _slots.acquire(blocking=False):
            return
        try:
            self.request.settimeout(IDLE_TIMEOUT)
            buffer = bytearray(65536)
            view = memoryview(buffer)
            while n := self.request.recv_into(buffer):
                self.request.sendall(view[:n])
            self.request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            _slots.release()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or ":" not in args[0]:
        print("usage: python -m pqproxy.lab.echo HOST:PORT", file=sys.stderr)
        return 2
    host, _, port = args[0].rpartition(":")
    with _Server((host, int(port)), _Echo) as server:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
        print(f"echo on {host}:{port}", flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
