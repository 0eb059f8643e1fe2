"""A peer of bench_resolve.py: the floor of one read per scan: Flask + the verdict
statement, nothing else.

``GET /bare-read/<code>`` runs trace's verdict statement (services.resolve.verdict_statement,
the very SQL the resolve path prepares) once per request through libpq, on one psycopg
connection per worker process (autocommit, prepared once per connection), and answers like
bench/bare_app.py plus the number of rows read. No code decryption, no scan log, no content:
whatever design reads the database once per scan cannot be faster than this on the same
machine, so its ratio to the bare endpoint is the ceiling any such design can reach.

The code in the path is ignored (decrypting it is the app's work, not the read's); the
serial read rotates over the run instead, so PostgreSQL reads many rows, not one hot row.

Environment (set by bench_resolve.py): BENCH_READ_DB_URL (a ``postgresql://`` URL, used
as libpq conninfo), BENCH_READ_RUN_ID, BENCH_READ_FIRST_SERIAL, BENCH_READ_COUNT (the
run's size).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from psycopg.pq import ExecStatus
from sqlalchemy.dialects import postgresql

from trace.services.resolve import verdict_statement

DB_URL = os.environ.get("BENCH_READ_DB_URL", "")
RUN_ID = int(os.environ.get("BENCH_READ_RUN_ID", "0"))
FIRST_SERIAL = int(os.environ.get("BENCH_READ_FIRST_SERIAL", "0"))
COUNT = int(os.environ.get("BENCH_READ_COUNT", "1"))
#: A prime step that shares no factor with the run sizes the bench uses (300,000 =
#: 2^5 * 3 * 5^5), so successive requests spread over the whole run and cover all of it.
STEP = 7919

STATEMENT, NAMES = verdict_statement(postgresql.dialect())

app = Flask(__name__)


@dataclass
class _Reader:
    """This process's connection, with the statement prepared on it, and its counter."""

    conn: psycopg.Connection[Any]
    counter: int
    #: Sync workers never contend for it; under gthread workers (BENCH_THREADS > 1) it
    #: keeps two threads off the one libpq connection, which is not thread safe.
    lock: threading.Lock


#: Keyed by process id: gunicorn forks its workers, and a libpq connection inherited over
#: a fork must not be used by the child (both would talk on the same socket).
_readers: dict[int, _Reader] = {}
_readers_lock = threading.Lock()


def _reader() -> _Reader:
    pid = os.getpid()
    reader = _readers.get(pid)
    if reader is not None:
        return reader
    with _readers_lock:
        reader = _readers.get(pid)
        if reader is None:
            conn = psycopg.connect(DB_URL, autocommit=True)
            _check(conn, conn.pgconn.prepare(STATEMENT.name, STATEMENT.sql.encode(), None))
            # Start each process at its own place so the two workers do not read the same
            # serials in lockstep.
            reader = _Reader(conn, pid, threading.Lock())
            _readers[pid] = reader
    return reader


def _check(conn: psycopg.Connection[Any], result: Any) -> Any:
    """``result`` if it succeeded; else an error carrying PostgreSQL's message."""
    if result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
        return result
    raise psycopg.DatabaseError(result.error_message.decode(conn.info.encoding, "replace"))


@app.get("/bare-read/<code>")
def bare_read(code: str) -> ResponseReturnValue:
    reader = _reader()
    with reader.lock:
        reader.counter += 1
        serial = FIRST_SERIAL + (reader.counter * STEP) % COUNT
        given = {"run_id": RUN_ID, "serial": serial}
        try:
            result = _check(
                reader.conn,
                reader.conn.pgconn.exec_prepared(
                    STATEMENT.name, [str(given[n]).encode() for n in NAMES]
                ),
            )
        except Exception:
            # A broken connection is not reused: the next request connects afresh (and
            # this one answers 500, which the bench counts as non-2xx).
            if reader.conn.pgconn.status != psycopg.pq.ConnStatus.OK:
                _readers.pop(os.getpid(), None)
                reader.conn.close()
            raise
    return jsonify({"verdict": "genuine", "code": code, "rows": result.ntuples})
