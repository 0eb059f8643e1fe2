"""Prepared statements through libpq on an engine's pooled psycopg connections.

The scan path's two statements -- the verdict read (services.resolve) and the scan log's
flush (services.scanbuffer) -- run here instead of through SQLAlchemy and psycopg's
cursors. Measured on the project machine (bench/RESULTS.md "## Resolve"), a cursor's
execute cost ~55 µs of CPU and ~115 µs of wall time per call (non-blocking socket, a
Python generator and poll() per step), libpq's blocking PQexecPrepared ~14 µs and ~40 µs;
psycopg's text dumper for list parameters is pure Python per element, which made the flush
cost more client CPU than the scans it wrote. This is psycopg's documented ``pq`` layer
(libpq itself) and its own row loaders, not a protocol implementation of ours.

Rules every caller gets:

* A statement is prepared once per pooled connection, under its name, and prepared again
  when PostgreSQL refuses the plan after a migration ("cached plan must not change result
  type", 0A000) or the statement is gone (26000).
* Unless asked to (``before_commit``), nothing here sends BEGIN (psycopg's cursors do,
  libpq does not): each statement is its own transaction, committed when it ends. A
  failed statement leaves no transaction behind either way.
* A broken connection (server restart, idle timeout) is taken out of the pool and raised
  as :class:`ConnectionLost`; whether to retry is the caller's decision (a read may, a
  write may not know whether it committed). Any other error is raised as psycopg's class
  for its SQLSTATE, and the connection goes back to the pool.
* Between statements a connection stays checked out, idle, in a small per-engine stack
  (``_kept``): SQLAlchemy's checkout and checkin -- events, locks, the record's
  bookkeeping -- cost more client CPU per scan than running the statement (about a tenth of
  a phone scan's in-process time). ``Engine.dispose()``
  (``engine_disposed``) closes them; a forked child never uses its parent's.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.adapt import Transformer
from psycopg.pq import ConnStatus, DiagnosticField, ExecStatus, TransactionStatus
from sqlalchemy import Engine, event
from sqlalchemy.pool import PoolProxiedConnection

#: Names of the statements prepared on a pooled connection (kept in its ``info``).
_PREPARED = "trace.prepared_statements"
#: A row decoder per statement and connection: looking up 20 columns' loaders by type for
#: every result cost more than decoding the row. Dropped when the statement is prepared
#: again (a migration may have changed a column's type).
_DECODERS = "trace.statement_decoders"
#: SQLSTATEs after which a statement is prepared again on the same connection.
_PREPARE_AGAIN = frozenset({"0A000", "26000"})


#: Idle connections kept checked out per engine, at most this many (one per thread that
#: runs statements at once: a sync worker's request thread and its scan-log flush).
KEEP_IDLE = 4
_kept: weakref.WeakKeyDictionary[Engine, list[PoolProxiedConnection]] = weakref.WeakKeyDictionary()
_kept_lock = threading.Lock()


def _take(engine: Engine) -> PoolProxiedConnection:
    """A kept idle connection of ``engine`` (list.pop is atomic), else one from its pool."""
    kept = _kept.get(engine)
    if kept:
        try:
            return kept.pop()
        except IndexError:  # another thread took the last one meanwhile
            pass
    return engine.raw_connection()


def _keep(engine: Engine, raw: PoolProxiedConnection) -> None:
    """Keep an idle, healthy connection for the next statement, or give it back."""
    kept = _kept.get(engine)
    if kept is None:
        with _kept_lock:
            kept = _kept.get(engine)
            if kept is None:
                kept = _kept[engine] = []
                if not event.contains(engine, "engine_disposed", _release):
                    event.listen(engine, "engine_disposed", _release)
    if len(kept) < KEEP_IDLE:
        kept.append(raw)
    else:
        raw.close()


def _release(engine: Engine) -> None:
    """Engine.dispose(): close the kept connections, as dispose closes the pool's idle
    ones (given back to the replaced pool, they would stay open until it is collected)."""
    with _kept_lock:
        kept = _kept.pop(engine, [])
    for raw in kept:
        raw.invalidate()
        raw.close()


#: Connections a forked child inherited: kept referenced, never used -- collecting them
#: would close the parent's connections from the child.
_inherited: list[list[PoolProxiedConnection]] = []


def _forget_after_fork() -> None:
    # The child must not talk on its parent's sockets; the parent still owns them.
    _inherited.extend(list(_kept.values()))
    _kept.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


class ConnectionLost(psycopg.OperationalError):
    """The statement's connection is broken; it was not returned to the pool."""


@dataclass(frozen=True)
class Statement:
    """A named statement in PostgreSQL's own ``$n`` parameter form."""

    name: bytes
    sql: str


def run(
    engine: Engine,
    statement: Statement,
    args: Sequence[bytes | None],
    before_commit: Callable[[], None] | None = None,
) -> list[tuple[Any, ...]]:
    """Execute ``statement`` with text-format ``args`` on one of ``engine``'s pooled
    connections; its rows, decoded by psycopg's loaders.

    Without ``before_commit`` the statement is its own transaction (one round trip). With
    it, the statement runs inside BEGIN ... COMMIT and ``before_commit()`` is called
    between the two, so a caller can mark the short moment in which the commit may or may
    not have happened (the scan buffer's readers wait only for that, not for the
    statement)."""
    raw = _take(engine)
    conn: Any = raw.driver_connection
    pgconn = conn.pgconn
    try:
        result = _execute(raw.info, conn, statement, args, before_commit is not None)
        rows = _decode(raw.info, conn, statement, result)
        if before_commit is not None:
            before_commit()
            _check(conn, pgconn.exec_(b"COMMIT"))
        return rows
    except Exception as exc:
        if pgconn.status != ConnStatus.OK:
            raise ConnectionLost(str(exc)) from exc
        raise
    finally:
        # Also after an interruption (KeyboardInterrupt, SystemExit): never back to the
        # pool inside a transaction or broken, as the pool resets nothing.
        if _idle_after_rollback(pgconn):
            _keep(engine, raw)
        else:
            raw.invalidate()  # it does not go back to the pool
            raw.close()


def _idle_after_rollback(pgconn: Any) -> bool:
    """Whether the connection is usable and outside a transaction, after rolling back
    whatever a failure left open."""
    try:
        if pgconn.status == ConnStatus.OK and pgconn.transaction_status != TransactionStatus.IDLE:
            pgconn.exec_(b"ROLLBACK")
        return bool(
            pgconn.status == ConnStatus.OK and pgconn.transaction_status == TransactionStatus.IDLE
        )
    except Exception:
        return False


def _decode(info: dict[str, Any], conn: Any, statement: Statement, result: Any) -> Any:
    if result.ntuples == 0:
        return []
    decoders: dict[bytes, tuple[int, Any]] = info.setdefault(_DECODERS, {})
    kept = decoders.get(statement.name)
    # A kept decoder is used only for a result of its own width (psycopg's C loader does
    # not check); a re-prepared statement has already dropped it.
    if kept is not None and kept[0] == result.nfields:
        decoder = kept[1]
        decoder.set_pgresult(result, set_loaders=False)
    else:
        decoder = Transformer(conn)
        decoder.set_pgresult(result)
        decoders[statement.name] = (result.nfields, decoder)
    return decoder.load_rows(0, result.ntuples, tuple)


def _execute(
    info: dict[str, Any],
    conn: Any,
    statement: Statement,
    args: Sequence[bytes | None],
    begin: bool,
) -> Any:
    """The prepared statement's result on ``conn`` (after a BEGIN if ``begin``), preparing
    it when needed."""
    pgconn = conn.pgconn
    prepared: set[bytes] = info.setdefault(_PREPARED, set())
    for attempt in (1, 2):
        if begin:
            _check(conn, pgconn.exec_(b"BEGIN"))
        if statement.name not in prepared:
            _check(conn, pgconn.prepare(statement.name, statement.sql.encode(), None))
            prepared.add(statement.name)
            info.get(_DECODERS, {}).pop(statement.name, None)
        result = pgconn.exec_prepared(statement.name, args)
        if result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
            return result
        if begin:
            pgconn.exec_(b"ROLLBACK")  # the failed statement aborted the transaction
        if attempt == 1 and _sqlstate(result) in _PREPARE_AGAIN:
            pgconn.exec_(b"DEALLOCATE " + statement.name)  # fails harmlessly if gone
            prepared.discard(statement.name)
            continue
        return _check(conn, result)
    raise AssertionError("unreachable")  # pragma: no cover


def command(raw: PoolProxiedConnection, sql: bytes) -> None:
    """Run a parameterless command (LISTEN, SET) on a connection the caller holds."""
    conn: Any = raw.driver_connection
    _check(conn, conn.pgconn.exec_(sql))


def _sqlstate(result: Any) -> str | None:
    if result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
        return None
    state = result.error_field(DiagnosticField.SQLSTATE)
    return state.decode() if state else None


def _check(conn: Any, result: Any) -> Any:
    """``result`` if it succeeded; else the psycopg error class of its SQLSTATE."""
    if result.status in (ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK):
        return result
    message = result.error_message.decode(conn.info.encoding, "replace").strip()
    state = _sqlstate(result)
    try:
        error_class: type[psycopg.Error] = (
            psycopg.errors.lookup(state) if state else psycopg.OperationalError
        )
    except KeyError:
        error_class = psycopg.DatabaseError
    raise error_class(message or "statement failed")
