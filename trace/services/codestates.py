"""Scans without a database read: each worker keeps the code states of the runs it serves.

A verdict needs the run's facts (status, batch, recall, void ranges, content stamps) and the
code's state (scan count, first scan's time and county, sticky suspicion). Reading them
costs a round trip to PostgreSQL per scan, which on the project machine is about as much CPU
(worker and database together) as all the rest of a scan (bench/RESULTS.md "## Resolve").
So each worker keeps, for every run it has seen scanned:

* the code states of the run, in arrays indexed by ``serial - first_serial`` (count and
  first scan time, 12 bytes per code; first county and suspicion in dicts, being rare),
  loaded from the database once, then kept current;
* the run's facts: the verdict query's row for the run with no code state, and the run's
  void ranges.

:meth:`CodeStateCache.facts` answers from these with the very row the verdict query would
return; a run not loaded yet, or anything the cache cannot vouch for, is read from the
database as before. How the copy stays exact:

* The database notifies every change (migration 0005): each changed code state, with its
  new values, on ``trace_code_states`` (in commit order, once committed), and any change
  to run facts on ``trace_run_facts``. The worker LISTENs on a connection of its own,
  started before it loads anything. A notification taken before a run's load began is in
  the load's snapshot; one taken after is applied on top. A state is only replaced by one
  with at least its count (counts only grow), so order and repeats do not matter.
* This worker's own scans: queued ones count through the scan buffer as before, and when a
  flush commits the buffer adds them here (:meth:`add_written`) before it forgets them, so
  no moment exists where a scan is neither queued nor counted. That sum is a lower bound
  (another worker may have written meanwhile); the flush's own notification, carrying the
  database's values, replaces it a moment later.
* If the listening connection fails, everything kept is dropped at once and rebuilt after
  it is back: nothing is trusted across a gap in the notifications. Without every trigger
  of migration 0005 in force the cache stays off (and logs why).
* A run-facts notification drops every run's facts (rare: recalls, voids, records); scans
  read the database until the next tick has loaded them again.

What stays as before: another worker's queued scans are invisible until its flush commits
(up to the flush interval, 100 ms), plus the moment a notification takes to arrive.

Notifications are taken from the socket without blocking, by each scan that asks and by the
scan buffer's thread every tick, which also loads the runs scans asked for; a request never
connects or loads anything itself. Memory: 12 bytes per code of each kept run, at most
``max_codes`` codes in all (the oldest runs are dropped first, and loaded again when
scanned).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from trace import pq
from trace.services import resolve

log = logging.getLogger(__name__)

CODE_STATES_CHANNEL = "trace_code_states"
RUN_FACTS_CHANNEL = "trace_run_facts"

#: Codes kept per worker, over all runs (12 bytes each).
MAX_CODES = 8_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: One code's scans in a committed flush: run_id, serial, scans, first scan's time, its
#: county, the suspicion raised.
Written = tuple[int, int, int, datetime, str | None, str | None]

#: Migration 0005's triggers: two on code_states, one per run-facts table.
TRIGGERS = 8
_TRIGGERS = pq.Statement(
    b"trace_state_triggers_1",
    "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE c.relnamespace = current_schema()::regnamespace AND t.tgenabled <> 'D' AND ("
    "(t.tgname IN ('notify_code_states_insert', 'notify_code_states_update') "
    "AND c.relname = 'code_states') OR "
    "(t.tgname = 'notify_run_facts' AND c.relname IN ('label_runs', 'batches', "
    "'label_voids', 'recalls', 'trace_events', 'attachments')))",
)
_VOIDS = pq.Statement(
    b"trace_run_voids_1",
    "SELECT id, first_serial, last_serial, reason FROM label_voids WHERE run_id = $1 ORDER BY id",
)
#: The run's code states as text columns of comma-separated numbers (offsets from the first
#: serial, counts, first scans in microseconds since 1970 UTC; 0 for none), and the few
#: with a county or a suspicion as offset:count:county:suspicion: decoding a row per code
#: would cost more than the query, these decode as whole arrays.
_STATES = pq.Statement(
    b"trace_run_states_1",
    "SELECT coalesce(string_agg((serial - $2)::text, ',' ORDER BY serial), ''), "
    "coalesce(string_agg(scan_count::text, ',' ORDER BY serial), ''), "
    "coalesce(string_agg(coalesce(((extract(epoch FROM first_scan_at) * 1000000)::bigint)"
    "::text, '0'), ',' ORDER BY serial), ''), "
    "coalesce(string_agg(concat_ws(':', serial - $2, scan_count, coalesce(first_region_code, "
    "''), coalesce(suspicious_reason, '')), ',') FILTER (WHERE first_region_code IS NOT NULL "
    "OR suspicious_reason IS NOT NULL), '') "
    "FROM code_states WHERE run_id = $1",
)


@dataclass
class _Run:
    """What a worker keeps of one run: code states by ``serial - first_serial``."""

    first_serial: int
    #: 0: no code state (never scanned).
    counts: np.ndarray[Any, np.dtype[np.int32]]
    #: First scan, microseconds since 1970 UTC; 0: none.
    first_us: np.ndarray[Any, np.dtype[np.int64]]
    first_regions: dict[int, str] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    #: Whether the database's code states are in (the first load is done).
    loaded: bool = False
    #: The verdict query's row for the run with no code state and no void; None until
    #: loaded, and again after a run-facts notification.
    facts: Any = None
    #: (first_serial, last_serial, id, reason) per void range, by id.
    voids: tuple[tuple[int, int, int, str | None], ...] = ()

    def set(self, offset: int, count: int, first_us: int, region: str, reason: str) -> None:
        """A code state as the database had it at some commit: kept unless what is kept
        has a higher count (a later commit's)."""
        if not 0 <= offset < len(self.counts) or count < self.counts[offset]:
            return
        self.counts[offset] = count
        self.first_us[offset] = first_us
        _put(self.first_regions, offset, region)
        _put(self.reasons, offset, reason)


def _put(values: dict[int, str], offset: int, value: str) -> None:
    if value:
        values[offset] = value
    else:
        values.pop(offset, None)


class CodeStateCache:
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
        #: Scans answered from the cache (for tests).
        self.answered = 0

    # -- the request side ------------------------------------------------------------------

    def facts(self, run_id: int, serial: int) -> Any:
        """The verdict row of a code, as read_facts would return it; None when the
        database must be read (run not loaded, serial outside it, no listener)."""
        with self._lock:
            if not self._drain():
                self._wanted.add(run_id)  # loaded once the listener is (back) up
                return None
            run = self._runs.get(run_id)
            if run is None or not run.loaded or run.facts is None:
                self._wanted.add(run_id)
                return None
            offset = serial - run.first_serial
            if not 0 <= offset < len(run.counts):
                return None  # the read decides (counterfeit)
            count = int(run.counts[offset])
            first_us = int(run.first_us[offset])
            region = run.first_regions.get(offset)
            reason = run.reasons.get(offset)
            row, voids = run.facts, run.voids
            self.answered += 1
        changes: dict[str, Any] = {}
        if count:
            changes.update(
                scan_count=count,
                first_scan_at=_EPOCH + timedelta(microseconds=first_us) if first_us else None,
                first_region_code=region,
                suspicious_reason=reason,
            )
        for first, last, void_id, void_reason in voids:  # by id: the query's min(id)
            if first <= serial <= last:
                changes.update(void_id=void_id, void_reason=void_reason)
                break
        return row._replace(**changes) if changes else row

    def add_written(self, written: Iterable[Written]) -> None:
        """This worker's flush committed these scans, per code: (run_id, serial, scans,
        first scan's time, its county, suspicion), added as the database added them."""
        with self._lock:
            for run_id, serial, scans, first_at, region, reason in written:
                run = self._runs.get(run_id)
                if run is None:
                    continue  # its load, begun after this commit, reads the state
                offset = serial - run.first_serial
                if not 0 <= offset < len(run.counts):
                    continue
                if not run.counts[offset]:
                    run.first_us[offset] = _micros(first_at)
                    _put(run.first_regions, offset, region or "")
                run.counts[offset] += scans
                if reason and offset not in run.reasons:  # sticky, as in the database
                    run.reasons[offset] = reason

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
                log.exception("code-state cache: dropped until the listener is back")
                with self._lock:
                    self._drop_listener()

    def close(self) -> None:
        self._closed = True
        with self._maintaining, self._lock:
            self._drop_listener()

    # -- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        # Without every trigger of migration 0005 in force, changes would go unnoticed
        # and a copied code could read "first scan": then the cache stays off.
        ((triggers,),) = pq.run(self.engine, _TRIGGERS, [])
        if triggers != TRIGGERS:
            if not self._warned:
                log.warning(
                    "code-state cache off: %d of its %d triggers are in force (migration "
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
                log.debug("closing the code-state listener", exc_info=True)

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
                    self._apply(note.extra.decode())
        except Exception:
            log.warning("code-state cache: listener lost; reading the database meanwhile")
            self._drop_listener()
            return False
        return True

    def _apply(self, payload: str) -> None:
        """A trace_code_states payload (migration 0005). Called under the lock."""
        for item in payload.split(","):
            run_id, serial, count, first_us, region, reason = item.split(":", 5)
            run = self._runs.get(int(run_id))
            if run is not None:  # not kept: its load, begun after this, reads the state
                offset = int(serial) - run.first_serial
                run.set(offset, int(count), int(first_us or 0), region, reason)

    def _load(self, run_id: int) -> None:
        """Load a run's facts and, the first time, its code states."""
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
                # Registered before the states are read: every notification taken from now
                # on lands here (_apply), every earlier one is in the read.
                run = self._runs[run_id] = _Run(
                    first_serial, np.zeros(count, np.int32), np.zeros(count, np.int64)
                )
            needs_states = not run.loaded
        states: tuple[Any, ...] = ()
        if needs_states:
            args = [str(run_id).encode(), str(first_serial).encode()]
            (states,) = pq.run(self.engine, _STATES, args)
        with self._lock:
            if not self._drain() or self._runs.get(run_id) is not run:
                return  # dropped meanwhile (listener lost, run evicted)
            if needs_states:
                _merge(run, *states)
                run.loaded = True
            if self._facts_generation == generation:
                run.facts, run.voids = facts, voids
            else:
                self._wanted.add(run_id)  # facts changed while loading: again next tick

    def _make_room(self, codes: int) -> None:
        """Drop the oldest kept runs until ``codes`` more fit. Called under the lock."""
        kept = sum(len(r.counts) for r in self._runs.values())
        for run_id in list(self._runs):  # oldest first
            if kept + codes <= self.max_codes:
                break
            kept -= len(self._runs.pop(run_id).counts)


def _merge(run: _Run, offsets: str, counts: str, firsts: str, extras: str) -> None:
    """A load's states (``_STATES``) into what notifications may have brought meanwhile:
    a state is taken where it is not older (lower count) than what is kept."""
    if offsets:
        at = np.array(offsets.split(","), np.int64)
        scans = np.array(counts.split(","), np.int64)
        first = np.array(firsts.split(","), np.int64)
        inside = (at >= 0) & (at < len(run.counts))
        at, scans, first = at[inside], scans[inside], first[inside]
        taken = scans >= run.counts[at]
        run.counts[at[taken]] = scans[taken]
        run.first_us[at[taken]] = first[taken]
    for item in extras.split(",") if extras else ():
        offset, scans_text, region, reason = item.split(":", 3)
        o = int(offset)
        if 0 <= o < len(run.counts) and run.counts[o] == int(scans_text):
            _put(run.first_regions, o, region)
            _put(run.reasons, o, reason)


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


def _no_session() -> Any:
    raise AssertionError("the code-state cache reads through libpq only")
