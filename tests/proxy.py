"""A small HTTP CONNECT proxy for tests, on 127.0.0.1 at an ephemeral port.

It answers `CONNECT host:port` by opening a socket to the target, replying 200, then copying bytes
both ways until either side closes (TLS passes through untouched). Each tunnel is recorded: the
target as the client named it, and the local port of the proxy's outbound socket, which is the peer
port the target sees. Only loopback targets are tunnelled; anything else, and any method but
CONNECT, is refused.

    with ConnectProxy() as proxy:
        os.environ["HTTPS_PROXY"] = proxy.url
        ...
        proxy.tunnels  # [Tunnel(target="127.0.0.1:8443", local_port=51234), ...]
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from dataclasses import dataclass

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_HEAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Tunnel:
    target: str  # "host:port", as the CONNECT line named it
    local_port: int  # the local port of the proxy's socket to the target


def _read_head(conn: socket.socket) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and whatever came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk or len(data) > _HEAD_LIMIT:
            raise ConnectionError("no complete request head")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _split_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy until `source` ends, then end `sink`'s sending side."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        try:
            head, rest = _read_head(client)
        except (ConnectionError, OSError):
            return
        method, _, rest_of_line = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        target = rest_of_line.partition(" ")[0]
        if method != "CONNECT":
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            host, port = _split_target(target)
        except ValueError:
            client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if host not in LOOPBACK:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host, port))
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with upstream:
            self.server.record(Tunnel(target, upstream.getsockname()[1]))
            client.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            _pump(client, upstream)
            back.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tunnels: list[Tunnel] = []
        self._lock = threading.Lock()

    def record(self, tunnel: Tunnel) -> None:
        with self._lock:
            self.tunnels.append(tunnel)


class ConnectProxy:
    """The proxy, serving from a thread of its own between `start()` and `stop()` (or `with`)."""

    def __init__(self) -> None:
        self._server = _Server()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="connect-proxy")

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tunnels(self) -> list[Tunnel]:
        """Every tunnel opened so far, in order."""
        with self._server._lock:
            return list(self._server.tunnels)

    def start(self) -> ConnectProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
