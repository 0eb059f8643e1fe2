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
  values, on ``trace_code_states`` (in commit order, once committed); which run or batch
  changed otherwise on ``trace_run_facts``. The worker LISTENs on a connection of its own,
  started before it loads anything. A notification taken before a run's load began is in
  the load's snapshot; one taken after is applied on top. A state only replaces one with a
  lower or equal count (counts only grow), so order and repeats do not matter.
* This worker's own scans: queued ones count through the scan buffer as before, and when a
  flush commits, the buffer hands over the states its statement returned -- the database's
  own values, like a notification's -- before it forgets the scans (:meth:`apply_written`):
  no moment exists where a scan is neither queued nor counted, and none is counted twice.
* Nothing is trusted across a gap in the notifications: if the listening connection fails,
  everything kept is dropped and rebuilt once it is back; every second the worker notifies
  itself (``trace_state_ping``) and checks the triggers are in force, and answers nothing
  from memory if its own ping has not come back within ``PING_TIMEOUT`` -- a connection
  that died silently, or triggers switched off, cost a few seconds of staleness at most.
  Without every trigger of migration 0005 the cache stays off (and logs why).
* A run-facts notification drops that run's facts (or its batch's runs', or all); scans of
  those runs read the database until the next tick has loaded them again.

What stays as before: another worker's queued scans are invisible until its flush commits
(up to the flush interval, 100 ms), plus the moment a notification takes to arrive.

Notifications are taken from the socket without blocking, by each scan that asks and by the
scan buffer's thread every tick, which also loads the runs scans asked for (at most
``LOAD_BUDGET`` seconds of loading per tick, so flushes are not held up); a request never
connects or loads anything itself. Memory: 12 bytes per code of each kept run, at most
``max_codes`` codes in all (the oldest runs are dropped first, and loaded again when
scanned).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from trace import pq
from trace.services import resolve
from trace.services.scanbuffer import FIRST_SCAN_MICROS

log = logging.getLogger(__name__)

CODE_STATES_CHANNEL = "trace_code_states"
RUN_FACTS_CHANNEL = "trace_run_facts"
PING_CHANNEL = "trace_state_ping"
_CHANNELS = (CODE_STATES_CHANNEL, RUN_FACTS_CHANNEL, PING_CHANNEL)

#: Codes kept per worker, over all runs (12 bytes each).
MAX_CODES = 8_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Migration 0005's triggers, by table.
_RUN_FACT_TABLES = (
    "label_runs",
    "label_voids",
    "batches",
    "recalls",
    "trace_events",
    "attachments",
)
TRIGGER_PAIRS = (
    ("code_states", "notify_code_states_insert"),
    ("code_states", "notify_code_states_update"),
    ("code_states", "notify_code_states_reset"),
    *((t, "notify_run_facts") for t in _RUN_FACT_TABLES),
    *((t, "notify_run_facts_truncate") for t in _RUN_FACT_TABLES),
)
TRIGGERS = len(TRIGGER_PAIRS)
#: How many of those triggers fire in this session ('O' origin and local, 'A' always; 'D'
#: disabled and 'R' replica-only do not).
_TRIGGERS_IN_FORCE = (
    "(SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE c.relnamespace = current_schema()::regnamespace AND t.tgenabled IN ('O', 'A') "
    "AND (c.relname, t.tgname) IN ("
    + ", ".join(f"('{table}', '{name}')" for table, name in TRIGGER_PAIRS)
    + "))"
)
_TRIGGERS = pq.Statement(b"trace_state_triggers_1", "SELECT " + _TRIGGERS_IN_FORCE)
#: A ping to itself, and the triggers in force.
_PING = pq.Statement(
    b"trace_state_ping_3",
    "SELECT pg_notify('" + PING_CHANNEL + "', $1)::text, " + _TRIGGERS_IN_FORCE,
)
_VOIDS = pq.Statement(
    b"trace_run_voids_1",
    "SELECT id, first_serial, last_serial, reason FROM label_voids WHERE run_id = $1 ORDER BY id",
)
#: The run's code states as text columns of comma-separated numbers (offsets from the first
#: serial, counts, first scans in microseconds since 1970 UTC; 0 for none), and the few
#: with a county or a suspicion as a JSON array of [offset, count, county, suspicion]:
#: decoding a row per code would cost more than the query; these decode as whole arrays.
_STATES = pq.Statement(
    b"trace_run_states_2",
    "SELECT coalesce(string_agg((serial - $2)::text, ',' ORDER BY serial), ''), "
    "coalesce(string_agg(scan_count::text, ',' ORDER BY serial), ''), "
    f"coalesce(string_agg(coalesce({FIRST_SCAN_MICROS}::text, '0'), ',' ORDER BY serial), ''), "
    "coalesce(json_agg(json_build_array(serial - $2, scan_count, first_region_code, "
    "suspicious_reason)) FILTER (WHERE first_region_code IS NOT NULL "
    "OR suspicious_reason IS NOT NULL), '[]')::text "
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

    def set(
        self, offset: int, count: int, first_us: int, region: str | None, reason: str | None
    ) -> None:
        """A code state as the database had it at some commit: kept unless what is kept
        has a higher count (a later commit's)."""
        if not 0 <= offset < len(self.counts) or count < self.counts[offset]:
            return
        self.counts[offset] = count
        self.first_us[offset] = first_us
        _put(self.first_regions, offset, region)
        _put(self.reasons, offset, reason)


def _put(values: dict[int, str], offset: int, value: str | None) -> None:
    if value:
        values[offset] = value
    else:
        values.pop(offset, None)


class CodeStateCache:
    """Per worker process and app: see the module doc. Thread-safe."""

    #: Seconds between pings; without its ping back for PING_TIMEOUT, nothing is trusted.
    PING_EVERY = 1.0
    PING_TIMEOUT = 5.0
    #: Seconds of run loading per tick at most (the tick also flushes the scan log).
    LOAD_BUDGET = 0.05

    def __init__(self, engine: Engine, max_codes: int = MAX_CODES) -> None:
        self.engine = engine
        self.max_codes = max_codes
        self._lock = threading.Lock()
        #: Serialises maintain() (the buffer's thread, an explicit call in tests).
        self._maintaining = threading.Lock()
        self._listener: PoolProxiedConnection | None = None
        self._runs: dict[int, _Run] = {}
        self._wanted: set[int] = set()
        #: The run-facts notifications ("run:<id>", "batch:<id>", "all") taken since the
        #: current load began (loads run one at a time): a load they name is stale.
        self._changed: set[str] = set()
        self._token = secrets.token_hex(8)
        self._pings_sent = 0
        self._ping_sent_at = 0.0
        self._next_listen_at = 0.0
        #: Pings on their way: number -> when sent (monotonic).
        self._unanswered: dict[int, float] = {}
        #: Answers from memory only until then (monotonic clock): pushed on by each ping back.
        self._trusted_until = 0.0
        self._closed = False
        self._failing = False
        self._warned = False
        #: Scans answered from the cache (for tests).
        self.answered = 0

    # -- the request side ------------------------------------------------------------------

    def facts(self, run_id: int, serial: int) -> Any:
        """The verdict row of a code, as read_facts would return it; None when the
        database must be read (run not loaded, serial outside it, notifications not
        known to arrive)."""
        with self._lock:
            if not self._drain() or time.monotonic() > self._trusted_until:
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

    def apply_written(self, states: str | None) -> None:
        """The code states a flush of this worker's wrote, as its statement returned them
        (the notifications' JSON form). Never raises: a failure drops everything kept."""
        if not states:
            return
        with self._lock:
            try:
                self._apply(states)
            except Exception:
                log.exception("code-state cache: a flush's states did not apply; dropped")
                self._drop_listener()

    # -- the background side ---------------------------------------------------------------

    def maintain(self) -> None:
        """Take notifications, (re)connect the listener, ping, load wanted runs. Never
        raises."""
        if self._closed:
            return
        with self._maintaining:
            try:
                if self._listener is None:
                    self._listen()
                with self._lock:
                    healthy = self._drain()  # pings come back before they are judged
                if healthy:
                    self._ping()
                with self._lock:
                    healthy = self._listener is not None
                    wanted: set[int] = set()
                    if healthy:  # else they wait for the listener to be back
                        wanted, self._wanted = self._wanted, set()
                if healthy and self._load_some(wanted):
                    self._failing = False
            except Exception:
                # Once per outage, not every tick while the database is away.
                if not self._failing:
                    log.exception("code-state cache: dropped until the database answers")
                self._failing = True
                with self._lock:
                    self._drop_listener()

    def close(self) -> None:
        self._closed = True
        # Not forever behind a tick stuck on the database (gunicorn's worker exit waits).
        got = self._maintaining.acquire(timeout=5)
        try:
            with self._lock:
                self._drop_listener()
        finally:
            if got:
                self._maintaining.release()

    # -- internals -------------------------------------------------------------------------

    def _listen(self) -> None:
        # At most one attempt per PING_EVERY: not a connection per tick while the database
        # is away or the triggers are missing.
        now = time.monotonic()
        if now < self._next_listen_at:
            return
        self._next_listen_at = now + self.PING_EVERY
        ((triggers,),) = pq.run(self.engine, _TRIGGERS, [])
        if not self._triggers_in_force(int(triggers)):
            return
        raw = self.engine.raw_connection()
        try:
            for channel in _CHANNELS:
                pq.command(raw, f"LISTEN {channel}".encode())
        except BaseException:
            raw.invalidate()
            raw.close()
            raise
        with self._lock:
            if self._closed:  # close() gave up waiting for this tick
                raw.invalidate()
                raw.close()
                return
            self._runs.clear()
            self._unanswered.clear()
            self._listener = raw
            # Trusted from the start: every change from now on is notified; the first ping,
            # sent now, must come back within the timeout.
            self._trusted_until = time.monotonic() + self.PING_TIMEOUT
        self._send_ping()

    def _ping(self) -> None:
        """Every PING_EVERY: ping ourselves and check the triggers. Everything is dropped
        if a ping sent PING_TIMEOUT ago has not come back (a busy thread that sent none is
        no sign of loss: facts() just stops trusting until one comes back) or a trigger is
        missing."""
        now = time.monotonic()
        with self._lock:
            overdue = any(now - sent > self.PING_TIMEOUT for sent in self._unanswered.values())
        if overdue:
            log.warning("code-state cache: notifications stopped arriving; dropped")
            with self._lock:
                self._drop_listener()
            return
        if now - self._ping_sent_at < self.PING_EVERY:
            return
        if not self._triggers_in_force(self._send_ping()):
            with self._lock:
                self._drop_listener()

    def _send_ping(self) -> int:
        """Notify ourselves (a ping numbered after the last); the triggers in force."""
        with self._lock:
            self._pings_sent += 1
            number = self._pings_sent
            self._ping_sent_at = self._unanswered[number] = time.monotonic()
        payload = f"{self._token}:{number}".encode()
        ((_, triggers),) = pq.run(self.engine, _PING, [payload])
        return int(triggers)

    def _pinged_back(self, payload: str) -> None:
        """Our ping ``number`` came back: what was notified before it was sent has arrived,
        so trust runs PING_TIMEOUT from its sending (not from now: it may have waited in
        the socket). Under the lock."""
        token, _, number_text = payload.partition(":")
        sent = self._unanswered.get(int(number_text)) if token == self._token else None
        if sent is None:
            return
        self._trusted_until = max(self._trusted_until, sent + self.PING_TIMEOUT)
        for number in [n for n in self._unanswered if n <= int(number_text)]:
            del self._unanswered[number]

    def _triggers_in_force(self, triggers: int) -> bool:
        # Without every trigger of migration 0005 in force, changes would go unnoticed and
        # a copied code could read "first scan": then the cache stays off.
        if triggers == TRIGGERS:
            self._warned = False
            return True
        if not self._warned:
            log.warning(
                "code-state cache off: %d of its %d triggers are in force (migration 0005); "
                "every scan reads the database",
                triggers,
                TRIGGERS,
            )
            self._warned = True
        return False

    def _drop_listener(self) -> None:
        """Forget everything: without the listener nothing kept can be trusted. Called
        under the lock."""
        self._wanted.update(self._runs)  # loaded again once the listener is back
        self._runs.clear()
        self._changed.add("all")
        self._trusted_until = 0.0
        self._unanswered.clear()
        raw, self._listener = self._listener, None
        if raw is not None:
            self._next_listen_at = 0.0  # a connection lost: try again at once
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
                channel, payload = note.relname.decode(), note.extra.decode()
                if channel == CODE_STATES_CHANNEL:
                    self._apply(payload)
                elif channel == RUN_FACTS_CHANNEL:
                    self._facts_changed(payload)
                elif channel == PING_CHANNEL:
                    self._pinged_back(payload)
        except Exception:
            log.warning("code-state cache: listener lost; reading the database meanwhile")
            self._drop_listener()
            return False
        return True

    def _apply(self, payload: str) -> None:
        """Code states in the notifications' form (migration 0005): a JSON array of
        [run_id, serial, count, first scan (microseconds), county, suspicion]. Under the
        lock."""
        for run_id, serial, count, first_us, region, reason in json.loads(payload):
            run = self._runs.get(run_id)
            if run is not None:  # not kept: its load, begun after this, reads the state
                run.set(serial - run.first_serial, count, first_us or 0, region, reason)

    def _facts_changed(self, payload: str) -> None:
        """``run:<id>``, ``batch:<id>`` or ``all`` (migration 0005). Under the lock."""
        self._changed.add(payload)
        kind, _, ident = payload.partition(":")
        if kind == "run":
            run_id = int(ident)
            run = self._runs.get(run_id)
            if run is not None:
                run.facts = None
                self._wanted.add(run_id)
        elif kind == "batch":
            batch_id = int(ident)
            for run_id, run in self._runs.items():
                if run.facts is not None and run.facts.batch_id == batch_id:
                    run.facts = None
                    self._wanted.add(run_id)
        else:  # all: a TRUNCATE, or code states deleted -- reload everything
            self._wanted.update(self._runs)
            self._runs.clear()

    def _load_some(self, wanted: set[int]) -> bool:
        """Load wanted runs for at most LOAD_BUDGET seconds; the rest wait for the next
        tick. A run that fails to load is asked for again (logged once per outage); False
        then."""
        deadline = time.monotonic() + self.LOAD_BUDGET
        pending = list(wanted)
        loaded = True
        while pending and time.monotonic() < deadline:
            run_id = pending.pop()
            try:
                self._load(run_id)
            except Exception:
                # What is kept stays trusted (the listener is fine); this run is read from
                # the database until a later tick loads it.
                pending.append(run_id)
                if not self._failing:
                    log.exception("code-state cache: loading run %d failed", run_id)
                self._failing, loaded = True, False
                break
        with self._lock:
            self._wanted.update(pending)
        return loaded

    def _load(self, run_id: int) -> None:
        """Load a run's facts and, the first time, its code states."""
        with self._lock:
            self._changed.clear()  # what changed before this load is in what it reads
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
                return  # dropped meanwhile (listener lost, run evicted, all reset)
            if needs_states:
                _merge(run, *states)
                run.loaded = True
            if self._changed.isdisjoint(("all", f"run:{run_id}", f"batch:{facts.batch_id}")):
                run.facts, run.voids = facts, voids
            else:
                self._wanted.add(run_id)  # its facts changed while loading: again next tick

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
    for offset, count, region, reason in json.loads(extras):
        if 0 <= offset < len(run.counts) and run.counts[offset] == count:
            _put(run.first_regions, offset, region)
            _put(run.reasons, offset, reason)


def _no_session() -> Any:
    raise AssertionError("the code-state cache reads through libpq only")
