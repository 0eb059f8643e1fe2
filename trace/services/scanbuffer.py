"""Write-behind buffer for the scan log (PostgreSQL): scans leave the request path.

DESIGN.md §6 asks that every scan be logged "without slowing the response". With the
buffer a resolve does not write at all: it appends the scan to this worker process's queue
and answers; a background thread writes the queue every ``interval`` seconds (or sooner
when ``batch`` scans are waiting) in ONE statement and ONE transaction (run through
libpq, trace.pq):

* a multi-row insert into ``scan_events`` (``json_to_recordset`` of one JSON array: the
  statement text is the same for any number of rows, so it is prepared once);
* the ``code_states`` upserts, aggregated per (run_id, serial) -- count, first scan, last
  scan, sticky suspicion -- and applied in (run_id, serial) order, so two workers flushing
  at once lock rows in the same order and cannot deadlock;
* ``synchronous_commit = off`` for that transaction only (``set_config(.., true)``), as the
  synchronous write did: audit entries and records keep full durability.

What the shopper sees stays exact for this worker: a code's count is the database's count
(read, or kept by the code-state cache, services/codestates.py, which a committed flush
hands its written states before the scans leave the queue) plus this process's queued
scans of the code (:meth:`ScanBuffer.read`, which also makes the two agree when a flush
commits in between); the first scan's time and county, the sticky
suspicion and the last located scan (distance rule) come from the queue too. The other
workers' queued scans are invisible for up to ``interval`` seconds: two shoppers scanning
one code in the same few milliseconds on two workers may both read "first scan" -- the same
class of race two simultaneous requests always had.

What can be lost: on a crash (SIGKILL, OOM, power loss) the scans still queued -- at most
``interval`` seconds of this worker's scans -- and, as before, the last moments of commits
made with ``synchronous_commit = off``. Nothing is corrupted and nothing half-written stays:
a flush is one transaction. That is acceptable for a scan log: it feeds counts, maps and
alerts, not money or records, and the loss window is the same order as the relaxed commit
the synchronous path already accepted. A graceful stop loses nothing: :func:`close_all` runs
from ``atexit`` and from gunicorn's ``worker_exit`` hook (trace/gunicorn_conf.py).

When the database fails: a failed flush drops its scans, counts every one of them
(``scanlog.note_failure``) and logs once per flush; the pages never see it. A flush is not
retried: after a lost connection the commit may have happened, and a retry would then log
the scans twice. If the database hangs instead of failing, the queue stops draining; beyond
``cap`` queued scans new scans are dropped and counted (logged once per 1,000), so memory
stays bounded (about 1 KB per queued scan).

Scan ids: the phone page's opt-in location post-back names its scan by id, so a buffered
scan needs its id at once. Each process reserves ids in blocks from the ``scan_events`` id
sequence (``nextval`` over ``generate_series``) and refills in the background before the
block runs out. Ids are then not in time order across workers (they never were across
transactions); the primary key is (id, scanned_at) and readers order by time.

A forked process (gunicorn with --preload) starts with an empty buffer of its own: the
queue, reserved ids and thread of the parent are never shared.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text

from trace import pq
from trace.services import scanlog
from trace.services.scanlog import ScanContext, ScanFacts, ScanRecord

if TYPE_CHECKING:
    from trace.services.codestates import CodeStateCache

log = logging.getLogger(__name__)

#: Log a dropped scan (queue full) once per this many.
DROP_LOG_EVERY = 1000


@dataclass(frozen=True)
class Pending:
    """This process's queued (not yet committed) counted scans of one code."""

    count: int
    first_at: datetime
    first_region: str | None
    #: The first rule that fired on a queued scan (sticky, like CodeState's).
    reason: str | None
    #: The latest queued scan whose county is known: (county, time).
    located: tuple[str, datetime] | None


class _Code:
    """Mutable aggregate behind Pending (only touched under the buffer's lock)."""

    __slots__ = ("count", "first_at", "first_region", "last_at", "last_region", "reason")

    def __init__(self, at: datetime, region: str | None, reason: str | None) -> None:
        self.count = 0
        self.first_at = at
        self.first_region = region
        self.last_at = at
        self.last_region: str | None = None
        self.reason = reason

    def add(self, at: datetime, region: str | None, reason: str | None) -> None:
        self.count += 1
        if at < self.first_at:
            self.first_at, self.first_region = at, region
        if at >= self.last_at:
            self.last_at = at
        if region is not None:
            self.last_region = region
        self.reason = self.reason or reason

    def view(self) -> Pending:
        located = (self.last_region, self.last_at) if self.last_region is not None else None
        return Pending(self.count, self.first_at, self.first_region, self.reason, located)


@dataclass
class _Scan:
    row: dict[str, Any]
    #: (run_id, serial) when the scan counts for the code's state, else None.
    key: tuple[int, int] | None
    at: datetime
    region: str | None
    reason: str | None


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "BIGINT"),
    ("scanned_at", "TIMESTAMP"),
    ("run_id", "INTEGER"),
    ("serial", "BIGINT"),
    ("enterprise_id", "INTEGER"),
    ("batch_id", "INTEGER"),
    ("product_id", "INTEGER"),
    ("channel", "TEXT"),
    ("device_id", "INTEGER"),
    ("region_code", "TEXT"),
    ("verdict", "TEXT"),
    ("ua_class", "TEXT"),
    ("ip_hash", "TEXT"),
    ("latitude", "DOUBLE PRECISION"),
    ("longitude", "DOUBLE PRECISION"),
)
_STATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "INTEGER"),
    ("serial", "BIGINT"),
    ("scan_count", "INTEGER"),
    ("first_scan_at", "TIMESTAMP"),
    ("first_region_code", "TEXT"),
    ("last_scan_at", "TIMESTAMP"),
    ("last_region_code", "TEXT"),
    ("suspicious_reason", "TEXT"),
    ("updated_at", "TIMESTAMP"),
)
_STATE_NAMES = tuple(name for name, _ in _STATE_COLUMNS)


def _recordset(columns: tuple[tuple[str, str], ...], param: str, alias: str) -> str:
    """Rows from one JSON array parameter: json_to_recordset with the columns' types."""
    kinds = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"json_to_recordset(CAST({param} AS json)) AS {alias}({kinds})"


def _names(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(name for name, _ in columns)


#: A code state's first scan as microseconds since 1970 UTC (stored naive UTC), the form
#: the code-state cache keeps (services/codestates.py) and migration 0005 notifies.
FIRST_SCAN_MICROS = "(extract(epoch FROM first_scan_at) * 1000000)::bigint"
#: The whole flush in one statement (inside BEGIN ... COMMIT, see _write): relaxed commit,
#: the scans, the code states (ordered: no deadlocks). Rows arrive as two JSON arrays ($1
#: scans, $2 code states): the statement text is the same for any number of rows
#: (prepared once per connection), and json.dumps is C code where psycopg's list dumper is
#: Python per element. Data-modifying CTEs always run; the final SELECT reports what was
#: written.
_FLUSH = pq.Statement(
    b"trace_scan_flush_2",
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS v), "
    f"scan AS (INSERT INTO scan_events ({_names(_COLUMNS)}) "
    f"SELECT {_names(_COLUMNS)} FROM {_recordset(_COLUMNS, '$1', 's')} RETURNING 1), "
    f"state AS (INSERT INTO code_states ({_names(_STATE_COLUMNS)}) "
    f"SELECT {_names(_STATE_COLUMNS)} FROM {_recordset(_STATE_COLUMNS, '$2', 'u')} "
    "ORDER BY run_id, serial "
    "ON CONFLICT (run_id, serial) DO UPDATE SET "
    "scan_count = code_states.scan_count + excluded.scan_count, "
    "first_scan_at = coalesce(code_states.first_scan_at, excluded.first_scan_at), "
    "first_region_code = CASE WHEN code_states.first_scan_at IS NULL "
    "THEN excluded.first_region_code ELSE code_states.first_region_code END, "
    "last_scan_at = greatest(code_states.last_scan_at, excluded.last_scan_at), "
    "last_region_code = coalesce(excluded.last_region_code, code_states.last_region_code), "
    "suspicious_reason = coalesce(code_states.suspicious_reason, excluded.suspicious_reason), "
    "updated_at = excluded.updated_at RETURNING run_id, serial, scan_count, first_scan_at, "
    "first_region_code, suspicious_reason) "
    "SELECT (SELECT count(*) FROM scan), (SELECT count(*) FROM state), relaxed.v, "
    # The states as written, in the form of migration 0005's notifications: the code-state
    # cache takes this worker's own writes from here (services/codestates.py).
    "(SELECT json_agg(json_build_array(run_id, serial, scan_count, "
    f"{FIRST_SCAN_MICROS}, first_region_code, suspicious_reason))::text FROM state) "
    "FROM relaxed",
)
#: One row (an array), not n rows: reading 500 rows through a result cost more than this.
_IDS = text("SELECT array_agg(nextval('scan_events_id_seq')) FROM generate_series(1, :n)")


def _naive(at: datetime) -> str:
    """A TIMESTAMP column's JSON value: naive UTC, as UTCDateTime stores them."""
    if at.tzinfo is not UTC:  # scans are stamped datetime.now(UTC): skip the conversion
        at = at.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat()


def _json(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


class ScanBuffer:
    """One per app and process: queue, id reserve, flush thread (started on first use)."""

    def __init__(
        self,
        engine: Engine,
        interval: float = 0.1,
        cap: int = 20_000,
        batch: int = 2_000,
        id_block: int = 500,
        state_cache: Callable[[Engine], CodeStateCache] | None = None,
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("the scan buffer needs PostgreSQL (ids come from its sequence)")
        self.engine = engine
        self.interval = interval
        self.cap = cap
        self.batch = batch
        self.id_block = id_block
        self._state_cache = state_cache
        self.dropped = 0
        self.flushed = 0
        self._reset()
        _buffers.add(self)

    def _reset(self) -> None:
        """Fresh state for the current process (also after a fork)."""
        inherited = getattr(self, "state_cache", None)
        if inherited is not None:
            # The parent's: never used, never collected here -- collecting it would close
            # the parent's listening connection from this process.
            _inherited.append(inherited)
        self._forks = _forks[0]
        self._lock = threading.Lock()
        #: Serialises flushes (the thread's, an explicit one, the final one).
        self._flush_lock = threading.Lock()
        self._id_lock = threading.Lock()
        #: Seqlock: odd while a flush commits (see read()).
        self._gen = 0
        self._stable = threading.Condition(threading.Lock())
        self._queue: list[_Scan] = []
        self._codes: dict[tuple[int, int], _Code] = {}
        self._ids: deque[int] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The code states of the runs this worker serves (services.codestates), kept
        #: current by this buffer's thread and told of this buffer's own writes. A
        #: parent's cache is left alone after a fork: it connects only from the thread,
        #: which the parent of gunicorn's workers never starts.
        self.state_cache = self._state_cache(self.engine) if self._state_cache else None

    # -- the request side ------------------------------------------------------------------

    def _check_process(self) -> None:
        if self._forks != _forks[0]:  # forked since (os.getpid() is a system call per scan)
            self._reset()
        if self._thread is None and not self._closed:
            with self._lock:
                if self._thread is None:
                    # The thread holds the buffer weakly: an app that is gone (tests build
                    # many) takes its thread with it.
                    self._thread = threading.Thread(
                        target=_run,
                        args=(weakref.ref(self), self._wake, self._stop, self.interval),
                        name="scan-log-flush",
                        daemon=True,
                    )
                    self._thread.start()

    def add(self, facts: ScanFacts, ctx: ScanContext, now: datetime) -> ScanRecord | None:
        """Queue one scan; its record (id, time) at once. None if it could not be queued
        (no id, queue full): counted, the caller answers anyway."""
        self._check_process()
        try:
            scan_id = self._next_id()
        except Exception as exc:  # the database is down: nothing to queue for
            scanlog.note_failure(exc, ctx.channel)
            return None
        row = scanlog.scan_params(facts, ctx, now)
        row["id"] = scan_id
        row["scanned_at"] = _naive(now)
        counts = facts.run_id is not None and facts.serial is not None and ctx.counts
        key = (int(facts.run_id or 0), int(facts.serial or 0)) if counts else None
        scan = _Scan(row, key, now, ctx.region_code, facts.new_suspicion)
        queued = full = False
        dropped = 0
        with self._lock:
            if len(self._queue) < self.cap:
                queued = True
                self._queue.append(scan)
                if key is not None:
                    code = self._codes.get(key)
                    if code is None:
                        code = self._codes[key] = _Code(now, ctx.region_code, None)
                    code.add(now, ctx.region_code, facts.new_suspicion)
                full = len(self._queue) >= self.batch
            else:
                self.dropped += 1
                dropped = self.dropped
        if not queued:
            scanlog.count_failures(1)
            if dropped % DROP_LOG_EVERY == 1:
                log.error(
                    "scan log queue full (%d scans waiting): dropped %d scans so far",
                    self.cap,
                    dropped,
                )
            return None
        if full:
            self._wake.set()
        return ScanRecord(id=scan_id, scanned_at=now)

    def read(self, run_id: int, serial: int, fetch: Any) -> tuple[Any, Pending | None]:
        """``fetch()`` (the verdict query) and this process's queued scans of the code, as
        of one moment: retried if a flush committed in between, which would otherwise
        count its scans twice (database and queue) or not at all."""
        self._check_process()
        key = (run_id, serial)
        result: Any = None
        pending: Pending | None = None
        for _ in range(5):
            with self._stable:
                while self._gen & 1:
                    self._stable.wait(0.1)
                gen = self._gen
            queued_before = key in self._codes
            result = fetch()
            with self._lock:
                code = self._codes.get(key)
                pending = code.view() if code is not None else None
            # A flush committed meanwhile matters only if it may have carried this code.
            if self._gen == gen or (not queued_before and pending is None):
                break
        return result, pending

    def __len__(self) -> int:
        return len(self._queue)

    # -- ids -------------------------------------------------------------------------------

    def _next_id(self) -> int:
        try:
            return self._ids.popleft()
        except IndexError:
            pass
        with self._id_lock:  # one reservation at a time; others then find ids waiting
            if not self._ids:
                self._reserve()
            return self._ids.popleft()

    def _reserve(self) -> None:
        with self.engine.connect() as conn:
            ids = conn.execute(_IDS, {"n": self.id_block}).scalar_one()
            conn.commit()
        self._ids.extend(int(i) for i in ids)

    def _refill(self) -> None:
        if len(self._ids) < self.id_block // 2:
            with self._id_lock:
                if len(self._ids) < self.id_block // 2:
                    self._reserve()

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> int:
        """Write everything queued so far; returns the scans written. Never raises."""
        if self._forks != _forks[0]:
            self._reset()
        with self._flush_lock:
            # What is queued now, not what arrives meanwhile: otherwise under steady load
            # the thread would write tiny batches back to back instead of one per interval.
            with self._lock:
                taken, self._queue = self._queue, []
            written = 0
            for start in range(0, len(taken), self.batch):
                written += self._write(taken[start : start + self.batch])
            return written

    def _write(self, taken: list[_Scan]) -> int:
        committing = False

        def commit_begins() -> None:
            # Readers wait only while the COMMIT is under way (until _end_commit): before
            # it the database surely lacks these scans, after it surely has them -- or,
            # if it failed, never will.
            nonlocal committing
            self._begin_commit()
            committing = True

        written: str | None = None
        try:
            states = [dict(zip(_STATE_NAMES, s, strict=True)) for s in self._states(taken)]
            args = [_json([scan.row for scan in taken]), _json(states)]
            try:
                rows = pq.run(self.engine, _FLUSH, args, before_commit=commit_begins)
            except pq.ConnectionLost:
                if committing:
                    raise  # the commit may have happened: a retry could log them twice
                # Nothing was written. After a server restart every pooled connection is
                # dead: drop them all and try once more on a fresh one.
                self.engine.dispose()
                rows = pq.run(self.engine, _FLUSH, args, before_commit=commit_begins)
            written = rows[0][3]
        except Exception as exc:  # counted and logged; the scans are lost (see module doc)
            scanlog.note_failure(exc, "buffer", count=len(taken))
            return 0
        finally:
            if not committing:  # failed before the commit: nothing was written
                self._begin_commit()
            self._end_commit(taken, written)
        self.flushed += len(taken)
        return len(taken)

    @staticmethod
    def _states(taken: list[_Scan]) -> list[tuple[Any, ...]]:
        """Code-state rows, one per code, sorted by (run_id, serial)."""
        codes: dict[tuple[int, int], _Code] = {}
        for scan in taken:
            if scan.key is None:
                continue
            code = codes.get(scan.key)
            if code is None:
                code = codes[scan.key] = _Code(scan.at, scan.region, None)
            code.add(scan.at, scan.region, scan.reason)
        return [
            (
                run_id,
                serial,
                c.count,
                _naive(c.first_at),
                c.first_region,
                _naive(c.last_at),
                c.last_region,
                c.reason,
                _naive(c.last_at),
            )
            for (run_id, serial), c in sorted(codes.items())
        ]

    def _begin_commit(self) -> None:
        with self._stable:
            self._gen += 1

    def _end_commit(self, taken: list[_Scan], written: str | None) -> None:
        """The taken scans are in the database now (or lost): no longer pending. The
        states a successful flush wrote (``written``, as its statement returned them; None
        when nothing was) go into the code-state cache first, so a reader never finds a
        scan neither queued nor counted."""
        if self.state_cache is not None:
            self.state_cache.apply_written(written)  # never raises: the seqlock must end
        with self._lock:
            for scan in taken:
                if scan.key is None:
                    continue
                code = self._codes.get(scan.key)
                if code is None:
                    continue
                code.count -= 1
                if code.count <= 0:
                    del self._codes[scan.key]
        with self._stable:
            self._gen += 1
            self._stable.notify_all()

    # -- the thread ------------------------------------------------------------------------

    def tick(self) -> None:
        """One round of the thread: write the queue, top up the reserved ids."""
        try:
            self.flush()
            self._refill()
            if self.state_cache is not None:
                self.state_cache.maintain()
        except Exception:  # the thread must outlive any error; flush() counts its own
            log.exception("scan log buffer thread")

    def close(self) -> None:
        """Stop the thread and write what is queued (graceful stop)."""
        if self._forks != _forks[0]:
            return  # the parent's buffer: nothing of ours in it
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
            if thread.is_alive():  # a flush stuck on the database: say so, do not hang
                log.error("scan log buffer thread still running 10 s after close()")
        self.flush()
        if self.state_cache is not None:
            self.state_cache.close()


def _run(
    ref: weakref.ref[ScanBuffer],
    wake: threading.Event,
    stop: threading.Event,
    interval: float,
) -> None:
    while not stop.is_set():
        wake.wait(interval)
        wake.clear()
        buffer = ref()
        if buffer is None:
            return
        buffer.tick()
        del buffer


_buffers: weakref.WeakSet[ScanBuffer] = weakref.WeakSet()
#: What a forked child inherited and must neither use nor close (see ScanBuffer._reset).
_inherited: list[Any] = []
#: Forks this process descends from (counted in the child): a buffer made before the last
#: fork belongs to the parent.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


def close_all() -> None:
    """Write every queued scan of this process: atexit and gunicorn's worker_exit."""
    for buffer in list(_buffers):
        try:
            buffer.close()
        except Exception:
            log.exception("closing the scan log buffer")


atexit.register(close_all)
