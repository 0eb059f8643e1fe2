"""Raw TCP (port 9100) sender against a local socket server on an ephemeral port."""

from __future__ import annotations

import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from trace.labels.printer import PrinterError, send_to_printer

JOB = [b"^XA^FDhello^FS^XZ\n" * 100, b"", b"^XA^FDworld^FS^XZ\n" * 100]


class Server:
    """A one-connection TCP server on 127.0.0.1; ``handler(conn)`` returns what it read."""

    def __init__(self, handler: Callable[[socket.socket], bytes]):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.thread.start()

    def _run(self, handler: Callable[[socket.socket], bytes]) -> None:
        conn, _ = self.sock.accept()
        with conn:
            self.received = handler(conn)

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], bytes]], Server]]:
    servers: list[Server] = []

    def start(handler: Callable[[socket.socket], bytes]) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def read_all(conn: socket.socket) -> bytes:
    data = bytearray()
    while chunk := conn.recv(65536):
        data += chunk
    return bytes(data)


def test_job_arrives_complete(server: Callable[..., Server]) -> None:
    srv = server(read_all)
    sent = send_to_printer("127.0.0.1", srv.port, iter(JOB), timeout=5)
    srv.thread.join(timeout=5)
    assert sent == sum(map(len, JOB))
    assert srv.received == b"".join(JOB)


def test_printer_that_keeps_the_connection_open_is_still_success(
    server: Callable[..., Server],
) -> None:
    release = threading.Event()

    def read_then_linger(conn: socket.socket) -> bytes:
        data = bytearray()
        while len(data) < sum(map(len, JOB)):
            data += conn.recv(65536)
        release.wait(5)  # does not close after the job, like many printers
        return bytes(data)

    srv = server(read_then_linger)
    try:
        assert send_to_printer("127.0.0.1", srv.port, JOB, timeout=5) == sum(map(len, JOB))
    finally:
        release.set()


def test_refused_connection() -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    message = f"拒绝连接 / printer at 127.0.0.1:{port} refused"
    with pytest.raises(PrinterError, match=re.escape(message)) as info:
        send_to_printer("127.0.0.1", port, JOB, timeout=2)
    assert info.value.sent == 0 and info.value.port == port


def test_dropped_mid_job(server: Callable[..., Server]) -> None:
    def read_some_then_reset(conn: socket.socket) -> bytes:
        data = conn.recv(1000)
        # SO_LINGER 0: close with a reset, as a printer does when it aborts a job
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return data

    srv = server(read_some_then_reset)
    big = (b"x" * 65536 for _ in range(1024))  # 64 MiB: far more than socket buffers hold
    with pytest.raises(PrinterError, match=r"连接中断 / .* dropped the connection") as info:
        send_to_printer("127.0.0.1", srv.port, big, timeout=5)
    assert 0 < info.value.sent < 64 * 2**20
    assert "can be resent" in str(info.value)


def test_printer_that_stops_reading_times_out(server: Callable[..., Server]) -> None:
    release = threading.Event()

    def never_read(conn: socket.socket) -> bytes:
        release.wait(10)
        return b""

    srv = server(never_read)
    big = (b"x" * 65536 for _ in range(1024))
    try:
        with pytest.raises(PrinterError, match="stopped accepting data"):
            send_to_printer("127.0.0.1", srv.port, big, timeout=0.5)
    finally:
        release.set()


def test_unresolvable_host() -> None:
    with pytest.raises(PrinterError, match="cannot resolve"):
        send_to_printer("no-such-printer.invalid", 9100, JOB, timeout=2)
