"""Send a print job straight to a network label printer (raw TCP, port 9100).

ZPL and TSPL printers (and most others) accept the job's bytes as they are on the "raw" /
JetDirect port. There is no acknowledgement in that protocol: a job counts as sent when
every byte was handed to the connection and it was closed cleanly. Any failure raises
``PrinterError`` with a bilingual message; nothing here retries -- the caller reports the
error and the same job can simply be sent again.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

__all__ = ["DEFAULT_PORT", "PrinterError", "send_to_printer"]

DEFAULT_PORT = 9100
CLOSE_WAIT = 1.0  # seconds to wait for the printer to close after the last byte


class PrinterError(Exception):
    """The printer could not be reached or the connection failed during the job."""

    def __init__(self, message: str, host: str, port: int, sent: int = 0):
        super().__init__(message)
        self.host = host
        self.port = port
        self.sent = sent  # bytes handed to the connection before the failure


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def send_to_printer(host: str, port: int, data: Iterable[bytes], timeout: float = 10.0) -> int:
    """Send ``data`` (an iterable of byte chunks) to ``host:port``; returns bytes sent.

    ``timeout`` applies to connecting and to each send (a printer that stops reading,
    e.g. out of labels with a full buffer, times out instead of hanging forever).
    """
    where = _where(host, port)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError as exc:
        raise PrinterError(
            f"打印机拒绝连接 / printer at {where} refused the connection "
            "(is it on, and is raw printing on port 9100 enabled?)",
            host,
            port,
        ) from exc
    except TimeoutError as exc:
        raise PrinterError(
            f"连接打印机超时 / no answer from the printer at {where} within {timeout:g} s",
            host,
            port,
        ) from exc
    except socket.gaierror as exc:
        raise PrinterError(
            f"找不到打印机地址 / cannot resolve the printer address {host!r}", host, port
        ) from exc
    except OSError as exc:
        raise PrinterError(
            f"无法连接打印机 / cannot connect to the printer at {where}: {exc.strerror or exc}",
            host,
            port,
        ) from exc

    sent = 0
    try:
        with sock:
            for chunk in data:
                if chunk:
                    sock.sendall(chunk)
                    sent += len(chunk)
            # Half-close, then wait briefly for the printer's side: a printer that reset
            # the connection (dropped the job) is reported here instead of silently.
            # Many printers keep the connection open after the job, so a quiet wait
            # that times out is success, not failure.
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(min(timeout, CLOSE_WAIT))
            try:
                while sock.recv(4096):
                    pass
            except TimeoutError:
                pass
    except TimeoutError as exc:
        raise PrinterError(
            f"打印机无响应 / the printer at {where} stopped accepting data "
            f"({sent} bytes sent; out of labels or paused?)",
            host,
            port,
            sent,
        ) from exc
    except OSError as exc:
        dropped = isinstance(exc, ConnectionError) or exc.errno in (errno.EPIPE, errno.ECONNRESET)
        what = "dropped the connection" if dropped else f"failed: {exc.strerror or exc}"
        raise PrinterError(
            f"打印机连接中断 / the printer at {where} {what} after {sent} bytes; "
            "the job was not completed and can be resent",
            host,
            port,
            sent,
        ) from exc
    return sent
