"""First scans without a database read: which codes of a run were ever scanned, per worker.

Most scans are first scans -- a shopper scans a package once -- and a first scan's verdict
needs nothing the worker cannot know in advance: the run's facts (status, batch, recall,
void ranges, content stamps) and the fact that the code has no state yet. Reading them
costs a round trip to PostgreSQL per scan, which on the project machine is about as much
CPU (worker and database together) as the rest of the scan (bench/RESULTS.md "## Resolve").
So each worker keeps, for every run it has seen scanned:

* a bitmap, one byte per code: 1 once the code has a ``code_states`` row (was ever
  scanned), loaded from the database once, then kept current;
* the run's facts: the verdict query's row for the run with no code state, and the run's
  void ranges.

A code whose byte is 0 is answered from these (:meth:`FirstScanIndex.facts`); any other
code -- byte 1, run not loaded yet, index out of order -- is read from the database as
before. Being wrong in that direction costs a read; the other direction would call a copied
code's scan a first scan, so a 0 is trusted only while it provably is one:

* The database notifies every change (migration 0005): new code states on
  ``trace_code_states`` (in commit order, once committed), and any change to run facts on
  ``trace_run_facts``. The worker LISTENs on one connection of its own, started before it
  loads anything. A notification received before a run's load started is in the load's
  snapshot; one received after is applied to the loaded bitmap (bytes only ever go from 0
  to 1, so applying one twice is harmless).
* This worker's own scans: queued ones count through the scan buffer as before, and at the
  end of a flush's commit the buffer sets their bytes (:meth:`mark_scanned`) before it
  forgets them, so no moment exists where a scan is neither queued nor marked.
* If the listening connection fails, everything kept is dropped at once and rebuilt after
  it is back: nothing is trusted across a gap in the notifications.
* A run-facts notification drops every run's facts (rare: recalls, voids, records); the
  next scans read the database until the facts are loaded again.

What stays as before: another worker's queued scans are invisible until its flush commits
(up to the flush interval, 100 ms), plus the moment a notification takes to arrive.

Notifications are taken from the socket without blocking, by the scan that needs the
index and by the scan buffer's thread every tick, which also loads wanted runs; a request
never connects or loads anything itself. Memory: one byte per code of each kept run, at
most ``max_codes`` in all (older runs are dropped first and loaded again when scanned).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from trace import pq
from trace.services import resolve

log = logging.getLogger(__name__)

CODE_STATES_CHANNEL = "trace_code_states"
RUN_FACTS_CHANNEL = "trace_run_facts"

#: Codes kept per worker, over all runs (one byte each).
MAX_CODES = 64_000_000

#: Migration 0005's triggers: one on code_states, one per run-facts table.
TRIGGERS = 7
_TRIGGERS = pq.Statement(
    b"trace_first_scan_triggers_1",
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE c.relnamespace = current_schema()::regnamespace AND t.tgenabled <> 'D' AND ("
    "(t.tgname = 'notify_code_states' AND c.relname = 'code_states') OR "
    "(t.tgname = 'notify_run_facts' AND c.relname IN ('label_runs', 'batches', "
    "'label_voids', 'recalls', 'trace_events', 'attachments')))",
)
_VOIDS = pq.Statement(
    b"trace_run_voids_1",
    "SELECT id, first_serial, last_serial, reason FROM label_voids WHERE run_id = $1 ORDER BY id",
)
#: The run's scanned codes as offsets from its first serial, in one text value: decoding
#: a row per code costs more than the query.
_SCANNED = pq.Statement(
    b"trace_run_scanned_1",
    "SELECT coalesce(string_agg((serial - $2)::text, ','), '') FROM code_states WHERE run_id = $1",
)


@dataclass
class _Run:
    """What a worker keeps of one run."""

    first_serial: int
    #: One byte per code (serial - first_serial): 1 once the code was ever scanned.
    scanned: bytearray
    #: Whether the database's code states are in ``scanned`` (the first load is done).
    loaded: bool = False
    #: The verdict query's row for the run with no code state and no void; None until
    #: loaded, and again after a run-facts notification.
    facts: Any = None
    #: (first_serial, last_serial, id, reason) per void range, by id.
    voids: tuple[tuple[int, int, int, str | None], ...] = ()


class FirstScanIndex:
    """Per worker process and app: see the module doc. Thread-safe."""

    def __init__(self, engine: Engine, max_codes: int = MAX_CODES) -> None:
        self.engine = engine
        self.max_codes = max_codes
        self._lock = threading.Lock()
        #: Serialises maintain() (the buffer's thread, an explicit call in tests).
        self._maintaining = threading.Lock()
        self._listener: PoolProxiedConnection | None = None
        self._runs: dict[int, _Run] = {}
        self._wanted: set[int] = set()
        #: Bumped by every run-facts notification: a facts load that saw it change is stale.
        self._facts_generation = 0
        self._closed = False
        self._warned = False
        #: Scans answered from the index (for tests and the log-health view).
        self.answered = 0

    # -- the request side ------------------------------------------------------------------

    def facts(self, run_id: int, serial: int) -> Any:
        """The verdict row of a code never scanned, as read_facts would return it; None
        when the database must be read (scanned before, run not loaded, no listener)."""
        with self._lock:
            if not self._drain():
                self._wanted.add(run_id)  # loaded once the listener is (back) up
                return None
            run = self._runs.get(run_id)
            if run is None or not run.loaded or run.facts is None:
                self._wanted.add(run_id)
                return None
            row = run.facts
            offset = serial - run.first_serial
            if not 0 <= offset < len(run.scanned) or run.scanned[offset]:
                return None
            voids = run.voids
            self.answered += 1
        for first, last, void_id, reason in voids:  # by id: the query's min(id)
            if first <= serial <= last:
                return row._replace(void_id=void_id, void_reason=reason)
        return row

    def mark_scanned(self, keys: Iterable[tuple[int, int]]) -> None:
        """This worker's scans of these codes are committed (the scan buffer's flush)."""
        with self._lock:
            for run_id, serial in keys:
                self._mark(run_id, serial)

    # -- the background side ---------------------------------------------------------------

    def maintain(self) -> None:
        """Take notifications, (re)connect the listener, load wanted runs. Never raises."""
        if self._closed:
            return
        with self._maintaining:
            try:
                if self._listener is None:
                    self._listen()
                with self._lock:
                    healthy = self._drain()
                    wanted, self._wanted = self._wanted, set()
                if healthy:
                    for run_id in wanted:
                        self._load(run_id)
            except Exception:
                log.exception("first-scan index: dropped until the listener is back")
                with self._lock:
                    self._drop_listener()

    def close(self) -> None:
        self._closed = True
        with self._maintaining, self._lock:
            self._drop_listener()

    # -- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        # Without every trigger of migration 0005 in force, changes would go unnoticed
        # and a copied code's scan could read "first scan": then the index stays off.
        ((triggers,),) = pq.run(self.engine, _TRIGGERS, [])
        if triggers != TRIGGERS:
            if not self._warned:
                log.warning(
                    "first-scan index off: %d of its %d triggers are in force (migration "
                    "0005); every scan reads the database",
                    triggers,
                    TRIGGERS,
                )
                self._warned = True
            return
        raw = self.engine.raw_connection()
        try:
            for channel in (CODE_STATES_CHANNEL, RUN_FACTS_CHANNEL):
                pq.command(raw, f"LISTEN {channel}".encode())
        except BaseException:
            raw.invalidate()
            raw.close()
            raise
        with self._lock:
            self._runs.clear()
            self._listener = raw

    def _drop_listener(self) -> None:
        """Forget everything: without the listener nothing kept can be trusted."""
        self._wanted.update(self._runs)  # loaded again once the listener is back
        self._runs.clear()
        self._facts_generation += 1
        raw, self._listener = self._listener, None
        if raw is not None:
            try:
                raw.invalidate()  # it LISTENs: never back to the pool
                raw.close()
            except Exception:
                log.debug("closing the first-scan listener", exc_info=True)

    def _drain(self) -> bool:
        """Apply every notification waiting on the socket (never blocks); False, with
        everything dropped, if the listener is broken. Called under the lock."""
        raw = self._listener
        if raw is None:
            return False
        pgconn: Any = raw.driver_connection.pgconn  # type: ignore[union-attr]
        try:
            pgconn.consume_input()
            while (note := pgconn.notifies()) is not None:
                if note.relname == RUN_FACTS_CHANNEL.encode():
                    self._facts_generation += 1
                    for run in self._runs.values():
                        run.facts = None
                    self._wanted.update(self._runs)
                elif note.extra:
                    for pair in note.extra.decode().split(","):
                        run_id, _, serial = pair.partition(":")
                        self._mark(int(run_id), int(serial))
        except Exception:
            log.warning("first-scan index: listener lost; reading the database meanwhile")
            self._drop_listener()
            return False
        return True

    def _mark(self, run_id: int, serial: int) -> None:
        """Called under the lock. A run not kept needs nothing: its load, begun after this
        notification was taken, reads the code's state from the database."""
        run = self._runs.get(run_id)
        if run is not None and 0 <= serial - run.first_serial < len(run.scanned):
            run.scanned[serial - run.first_serial] = 1

    def _load(self, run_id: int) -> None:
        """Load a run's facts and, the first time, the codes of it ever scanned."""
        with self._lock:
            generation = self._facts_generation
        facts = resolve.read_facts(_no_session, run_id, -1, self.engine)
        if facts is None:
            return  # no such run: its scans read the database (and answer counterfeit)
        voids = tuple(
            (int(first), int(last), int(void_id), reason)
            for void_id, first, last, reason in pq.run(self.engine, _VOIDS, [str(run_id).encode()])
        )
        first_serial, count = int(facts.first_serial), int(facts.count)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                self._make_room(count)
                # Registered before the code states are read: every notification taken
                # from now on lands in this bitmap (_mark), every earlier one is in the read.
                run = self._runs[run_id] = _Run(first_serial, bytearray(count))
            needs_codes = not run.loaded
        offsets = None
        if needs_codes:
            args = [str(run_id).encode(), str(first_serial).encode()]
            (text,) = pq.run(self.engine, _SCANNED, args)[0]
            offsets = np.array(text.split(","), dtype=np.int64) if text else None
        with self._lock:
            if not self._drain() or self._runs.get(run_id) is not run:
                return  # dropped meanwhile (listener lost, run evicted)
            if needs_codes:
                if offsets is not None:
                    inside = offsets[(offsets >= 0) & (offsets < len(run.scanned))]
                    np.frombuffer(run.scanned, dtype=np.uint8)[inside] = 1
                run.loaded = True
            if self._facts_generation == generation:
                run.facts, run.voids = facts, voids
            else:
                self._wanted.add(run_id)  # facts changed while loading: again next tick

    def _make_room(self, codes: int) -> None:
        """Drop the oldest kept runs until ``codes`` more fit. Called under the lock."""
        kept = sum(len(r.scanned) for r in self._runs.values())
        for run_id in list(self._runs):  # oldest first
            if kept + codes <= self.max_codes:
                break
            kept -= len(self._runs.pop(run_id).scanned)


def _no_session() -> Any:
    raise AssertionError("the first-scan index reads through libpq only")
