"""gunicorn settings for trace: ``gunicorn -c python:trace.gunicorn_conf 'trace.app:create_app()'``.

Only what the app needs from the server; workers, bind, logs stay on the command line.
The ``worker_exit`` hook writes every scan still queued in the worker's write-behind buffer
(services/scanbuffer.py) when the worker stops gracefully (SIGTERM, SIGHUP reload,
max-requests): scans logged == scans answered. ``atexit`` does the same as a second line.
"""

from __future__ import annotations

import sys
from typing import Any


def worker_exit(server: Any, worker: Any) -> None:
    buffers = sys.modules.get("trace.services.scanbuffer")
    if buffers is not None:  # loaded only by apps that log scans
        buffers.close_all()
