"""Scan resolution: a scanned text -> a verdict and what the public may see (DESIGN.md §6).

The hot path of the platform. For one scan:

1. ``codes.parse`` decrypts and checks the code in memory. A forged or mistyped code stops
   here: no database query at all (the scan log then records the attempt, run_id NULL).
2. One query reads everything the verdict needs: the run (status, range, key version),
   the batch's status, the code's state (count, first scan), a void covering the
   serial, the batch's open recall, and two "content stamps" (newest event id, newest
   attachment id). On PostgreSQL it runs as one prepared statement through libpq on an
   autocommit connection (no BEGIN/COMMIT round trips), see ``read_facts``.
   With the scan log's write-behind buffer (services.scanbuffer) the code's count, first
   scan and suspicion add this process's queued scans, read consistently with the query.
3. The batch's public content -- product, producer, origin, timeline, inspections,
   certificates, media, already filtered by the run's template -- comes from a small
   in-process cache keyed by (run, stamps), so a new event or attachment is visible at
   once; edits of product/producer/site rows are seen within ``ContentCache.ttl`` seconds.
   The verdict itself is never cached.

Verdicts, strongest first: counterfeit (not a code we issued; also a decrypting code whose
run is unknown, not issued, or whose serial is outside the run), voided, recalled,
suspicious, genuine. Voided and recalled pages still show the product so the shopper can
recognise it; a counterfeit page shows nothing, and is the same whatever was wrong.

Suspicious: more than ``Rules.max_scans`` scans of an item-level code, or two scans in
counties farther apart than ``Rules.max_speed_kmh`` allows (``scanlog.too_fast``). Once
suspicious, a code stays suspicious (``CodeState.suspicious_reason``). Batch-level codes
(one code printed on every package of a batch) are scanned by many shoppers in many
places by design, so neither rule applies to them.

What is always public: the product (name, category, specification, brand) and the batch
number, i.e. what the code identifies. Everything else appears only if the run's template
publishes its section (``services.templates.PUBLIC_SECTIONS``).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections import OrderedDict, namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Dialect, Engine, and_, bindparam, func, select
from sqlalchemy.orm import Session, aliased

from trace import pq
from trace.crypto import codes
from trace.crypto.keyring import Keyring
from trace.models import (
    Attachment,
    Batch,
    CodeState,
    Enterprise,
    LabelRun,
    LabelVoid,
    Product,
    Recall,
    Site,
    TraceEvent,
)
from trace.models.enums import BatchStatus, EventType, LabelLevel, RunStatus, Verdict
from trace.regions import lookup as regions
from trace.services import events as event_service
from trace.services import templates
from trace.services.scanbuffer import Pending, ScanBuffer
from trace.services.scanlog import (
    COUNT,
    DISTANCE,
    Rules,
    ScanContext,
    ScanFacts,
    previous_located_scan,
    too_fast,
)

#: Dates on the public page are China dates.
CST = timezone(timedelta(hours=8))

#: Which public section each event type belongs to (templates.PUBLIC_SECTIONS).
SECTION_OF_EVENT: dict[str, str] = {
    EventType.SOWING.value: "farming",
    EventType.IRRIGATION.value: "farming",
    EventType.CARE.value: "farming",
    EventType.HARVEST.value: "farming",
    EventType.PESTICIDE.value: "pesticide",
    EventType.FERTILIZING.value: "fertilizer",
    EventType.INSPECTION.value: "inspections",
    EventType.CERTIFICATION.value: "certificates",
    EventType.PROCESSING.value: "processing",
    EventType.PACKING.value: "processing",
    EventType.SHIPPING.value: "shipping",
    EventType.RECEIVING.value: "shipping",
    EventType.RETAIL.value: "shipping",
}
#: Shown in their own cards rather than in the timeline.
CARD_SECTIONS = ("inspections", "certificates")


def extract_code(text: str) -> str:
    """The code in what a scanner typed: a bare code or the label's whole QR URL
    (``HTTPS://T.EXAMPLE.CN/Q/<CODE>``), any case, surrounding blanks ignored."""
    text = (text or "").strip()
    if "/" in text:
        text = text.rstrip("/").rsplit("/", 1)[-1]
    return text


# -- public content, cached per run ------------------------------------------------------------


@dataclass
class PublicContent:
    """A run's public view of its batch (already filtered by the run's template)."""

    data: dict[str, Any]
    #: What the web layer renders of it (fragments per language, the JSON, whole pages
    #: around the per-scan parts), cached with the content under keys of its own.
    rendered: dict[str, Any] = field(default_factory=dict)


class ContentCache:
    """Small LRU of PublicContent keyed by (run id, newest event id, newest attachment id).

    One per app (and so per worker process): content of one database never answers for
    another. Entries also expire after ``ttl`` seconds so edits of the product, producer
    or site rows (which do not change the stamps) show up soon.
    """

    def __init__(self, ttl: float = 60.0, size: int = 1024) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[tuple[int, int, int], tuple[float, PublicContent]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, int]) -> PublicContent | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: tuple[int, int, int], content: PublicContent) -> None:
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, content)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _day(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(CST).date().isoformat()
    return value.isoformat()


def _origin(site: Site) -> dict[str, Any]:
    levels = {r.level: r.name for r in regions.hierarchy(site.region_code)}
    return {
        "region_code": site.region_code,
        "province": levels.get("province", ""),
        "city": levels.get("city", ""),
        "county": levels.get("county", ""),
        "township": site.township,
        "village": site.village,
        "site": site.name,
    }


def _phi(event: TraceEvent, findings: dict[int, dict[str, Any]], harvested: bool) -> dict[str, Any]:
    days = int(event.details.get("phi_days", 0))
    safe_from = (event.occurred_at + timedelta(days=days)).astimezone(CST).date()
    finding = findings.get(event.id)
    respected: bool | None = None if not harvested else finding is None
    return {
        "days": days,
        "safe_from": safe_from.isoformat(),
        "respected": respected,
        "days_short": finding["days_short"] if finding else 0,
    }


def _event_view(
    event: TraceEvent, findings: dict[int, dict[str, Any]], harvested: bool
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "section": SECTION_OF_EVENT.get(event.type, "farming"),
        "date": _day(event.occurred_at),
        "occurred_at": event.occurred_at.isoformat(),
        "place": event.place,
        "actor": event.actor,
        "note": event.note,
        "details": dict(event.details or {}),
        "correction": event.correction_reason if event.corrects_id is not None else None,
    }
    if event.type == EventType.PESTICIDE.value:
        view["phi"] = _phi(event, findings, harvested)
    if event.type == EventType.SHIPPING.value:
        dest = view["details"].get("destination_region")
        view["destination_region_name"] = regions.full_name(dest) if dest else ""
    if event.type == EventType.CERTIFICATION.value:
        until = view["details"].get("valid_until")
        today = datetime.now(CST).date().isoformat()
        view["valid_now"] = bool(until) and str(
            view["details"].get("valid_from", "")
        ) <= today <= str(until)
    return view


def build_content(
    session: Session, batch_id: int, template: dict[str, Any] | None
) -> dict[str, Any]:
    """The public view of a batch under a run's template (three queries; cached by callers)."""
    row = session.execute(
        select(Batch, Product, Enterprise, Site)
        .join(Product, Product.id == Batch.product_id)
        .join(Enterprise, Enterprise.id == Batch.enterprise_id)
        .outerjoin(Site, Site.id == Batch.site_id)
        .where(Batch.id == batch_id)
    ).one()
    batch, product, enterprise, site = row
    shows = {s for s in templates.PUBLIC_SECTIONS if templates.is_public(template, s)}
    out: dict[str, Any] = {
        "product": {
            "name": product.name,
            "category": product.category,
            "specification": product.specification,
            "brand": product.brand,
            "batch_no": batch.batch_no,
        },
    }
    if "producer" in shows:
        out["producer"] = {
            "name": enterprise.name,
            "wechat_account": enterprise.wechat_account,
            "region": regions.full_name(enterprise.region_code),
        }
    if "origin" in shows and site is not None:
        out["origin"] = _origin(site)
    if "dates" in shows:
        out["dates"] = {
            "harvest_date": _day(batch.harvest_date),
            "pack_date": _day(batch.pack_date),
        }
    if "grade" in shows:
        out["grade"] = batch.grade
    all_events = event_service.events_of(session, batch.id)
    effective = event_service.effective_events(all_events)
    findings = {
        f["pesticide_event_id"]: f
        for f in event_service.phi_findings(all_events, batch.harvest_date)
    }
    harvested = batch.harvest_date is not None or any(
        e.type == EventType.HARVEST.value for e in effective
    )
    timeline = []
    cards: dict[str, list[dict[str, Any]]] = {s: [] for s in CARD_SECTIONS}
    for event in effective:
        section = SECTION_OF_EVENT.get(event.type, "farming")
        if section not in shows:
            continue
        view = _event_view(event, findings, harvested)
        if section in cards:
            cards[section].append(view)
        else:
            timeline.append(view)
    if any(s in shows for s in ("farming", "pesticide", "fertilizer", "processing", "shipping")):
        out["timeline"] = timeline
    for section in CARD_SECTIONS:
        if section in shows:
            out[section] = cards[section]
    if "media" in shows:
        media = list(
            session.scalars(
                select(Attachment)
                .where(Attachment.batch_id == batch.id, Attachment.is_public.is_(True))
                .order_by(Attachment.id)
            )
        )
        out["media"] = _media(media)
    return out


def _media(items: list[Attachment]) -> list[dict[str, Any]]:
    images = [a for a in items if a.content_type.startswith("image/")]
    out = []
    for a in items:
        kind = (
            "image"
            if a.content_type.startswith("image/")
            else "video"
            if a.content_type.startswith("video/")
            else "document"
        )
        entry: dict[str, Any] = {
            "id": a.id,
            "kind": kind,
            "content_type": a.content_type,
            "caption": a.caption,
            "event_id": a.event_id,
            "size": a.size,
        }
        if kind == "video":
            # Poster: a photo of the same event if there is one, else the batch's first photo.
            same = [i for i in images if a.event_id is not None and i.event_id == a.event_id]
            posters = same or images
            entry["poster_id"] = posters[0].id if posters else None
        out.append(entry)
    return out


# -- resolving ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolution:
    verdict: str
    facts: ScanFacts
    #: Scans of this code including this one (printer checks do not count).
    scan_count: int = 0
    first_scan_at: datetime | None = None
    first_region_code: str | None = None
    suspicious_reason: str | None = None
    recall: dict[str, Any] | None = None
    voided: bool = False
    void_reason: str | None = None
    level: str | None = None
    content: PublicContent | None = None

    @property
    def is_first_scan(self) -> bool:
        return self.scan_count == 1

    @property
    def genuine_code(self) -> bool:
        return self.verdict != Verdict.COUNTERFEIT.value


COUNTERFEIT = Resolution(
    verdict=Verdict.COUNTERFEIT.value, facts=ScanFacts(verdict=Verdict.COUNTERFEIT.value)
)


def _build_run_query() -> Any:
    """The one query behind a verdict, built once with bind parameters (:run_id, :serial):
    building a statement of this size costs more than running it."""
    run_id: Any = bindparam("run_id")
    serial: Any = bindparam("serial")
    # Aliases: the subqueries must not correlate with the joined rows they select.
    v, r = aliased(LabelVoid), aliased(Recall)
    void_id = (
        select(func.min(v.id))
        .where(v.run_id == run_id, v.first_serial <= serial, v.last_serial >= serial)
        .scalar_subquery()
    )
    # The batch's latest recall, open or closed: closing a recall ends the regulator's
    # action, not the warning -- a package still on a shelf must read "recalled".
    recall_id = select(func.max(r.id)).where(r.batch_id == LabelRun.batch_id).scalar_subquery()
    events_stamp = (
        select(func.max(TraceEvent.id))
        .where(TraceEvent.batch_id == LabelRun.batch_id)
        .scalar_subquery()
    )
    media_stamp = (
        select(func.max(Attachment.id))
        .where(Attachment.batch_id == LabelRun.batch_id)
        .scalar_subquery()
    )
    return (
        select(
            LabelRun.status,
            LabelRun.first_serial,
            LabelRun.count,
            LabelRun.level,
            LabelRun.key_version,
            LabelRun.batch_id,
            LabelRun.enterprise_id,
            Batch.product_id,
            Batch.status.label("batch_status"),
            CodeState.scan_count,
            CodeState.first_scan_at,
            CodeState.first_region_code,
            CodeState.suspicious_reason,
            LabelVoid.id.label("void_id"),
            LabelVoid.reason.label("void_reason"),
            Recall.level.label("recall_level"),
            Recall.public_notice,
            Recall.opened_at,
            events_stamp.label("events_stamp"),
            media_stamp.label("media_stamp"),
        )
        .select_from(LabelRun)
        .join(Batch, Batch.id == LabelRun.batch_id)
        .outerjoin(CodeState, and_(CodeState.run_id == LabelRun.id, CodeState.serial == serial))
        .outerjoin(LabelVoid, LabelVoid.id == void_id)
        .outerjoin(Recall, Recall.id == recall_id)
        .where(LabelRun.id == run_id)
    )


_RUN_QUERY = _build_run_query()
#: The query's columns, for rows read through the DBAPI (read_facts).
_FactsRow = namedtuple(  # type: ignore[misc]
    "_FactsRow", [c.name for c in _RUN_QUERY.selected_columns]
)
#: Where the two naive-UTC times sit in a row read through libpq.
_FIRST_SCAN_AT = _FactsRow._fields.index("first_scan_at")
_OPENED_AT = _FactsRow._fields.index("opened_at")


@functools.cache
def verdict_statement(dialect: Dialect) -> tuple[pq.Statement, tuple[str, ...]]:
    """The query in PostgreSQL's own $n form, prepared once per connection through libpq,
    and the parameter name of each $n (``run_id`` or ``serial``)."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", number, str(_RUN_QUERY.compile(dialect=dialect)))
    return pq.Statement(b"trace_verdict_1", sql), tuple(names)


#: A session, or a function that opens one when first needed: a warm resolve on
#: PostgreSQL needs no session at all (read_facts reads on its own connection).
SessionSource = Session | Callable[[], Session]


def _session(source: SessionSource) -> Session:
    return source if isinstance(source, Session) else source()


def read_facts(
    source: SessionSource, run_id: int, serial: int, engine: Engine | None = None
) -> Any:
    """The verdict query's row (or None).

    PostgreSQL, given ``engine`` (the app's verdict engine): through libpq on one of its
    pooled connections (``_read_facts_libpq``). Without an engine, and on SQLite, the same
    query goes through SQLAlchemy Core on the session.
    """
    if engine is None or engine.dialect.name != "postgresql":
        params = {"run_id": run_id, "serial": serial}
        return _session(source).connection().execute(_RUN_QUERY, params).one_or_none()
    try:
        values = _read_facts_libpq(engine, run_id, serial)
    except pq.ConnectionLost:
        # After a server restart every pooled connection is dead, not only this one:
        # drop the pool's idle connections so the second try connects afresh.
        engine.dispose()
        values = _read_facts_libpq(engine, run_id, serial)
    if values is None:
        return None
    # UTCDateTime's job on the SQLAlchemy path: stored naive UTC, handed out aware.
    if values[_FIRST_SCAN_AT] is not None or values[_OPENED_AT] is not None:
        fixed = list(values)
        for i in (_FIRST_SCAN_AT, _OPENED_AT):
            if fixed[i] is not None:
                fixed[i] = fixed[i].replace(tzinfo=UTC)
        values = tuple(fixed)
    return _FactsRow._make(values)


def _read_facts_libpq(engine: Engine, run_id: int, serial: int) -> tuple[Any, ...] | None:
    """One round trip: the verdict query prepared once per connection of the verdict
    engine's pool and run through libpq (trace.pq: why, and what happens on errors)."""
    statement, names = verdict_statement(engine.dialect)
    given = {"run_id": run_id, "serial": serial}
    rows = pq.run(engine, statement, [str(given[n]).encode() for n in names])
    return rows[0] if rows else None


def resolve(
    session: SessionSource,
    keyring: Keyring,
    text: str,
    ctx: ScanContext,
    rules: Rules,
    cache: ContentCache,
    now: datetime | None = None,
    buffer: ScanBuffer | None = None,
    engine: Engine | None = None,
) -> Resolution:
    """The verdict on a scanned text and the public content behind it. Reads only.

    With ``buffer`` (the scan log's write-behind queue of this process) the code's queued
    scans count as if they were written already. With ``engine`` the verdict query reads
    on its own connection and ``session`` (then best a function) is opened only if needed:
    for content not cached yet, or a scan with a county (distance rule)."""
    code = codes.parse(keyring, extract_code(text))
    if code is None:
        return COUNTERFEIT  # before any database access
    pending: Pending | None = None

    def fetch() -> Any:
        # Looked up here, inside buffer.read(), which has replaced a forked parent's state.
        kept = buffer.state_cache if buffer is not None else None
        if kept is not None:  # the worker's copy, kept current (services/codestates.py)
            row = kept.facts(code.run_id, code.serial)
            if row is not None:
                return row
        return read_facts(session, code.run_id, code.serial, engine)

    if buffer is not None:
        row, pending = buffer.read(code.run_id, code.serial, fetch)
    else:
        row = fetch()
    if (
        row is None
        or row.status != RunStatus.ISSUED  # StrEnum: no .value lookup per scan
        or row.key_version != code.key_version
        or not row.first_serial <= code.serial <= row.first_serial + row.count - 1
    ):
        return COUNTERFEIT
    now = now or datetime.now(UTC)
    item_level = row.level != LabelLevel.BATCH
    before = int(row.scan_count or 0) + (pending.count if pending else 0)
    count = before + 1 if ctx.counts else before
    reason = row.suspicious_reason or (pending.reason if pending else None)
    new_suspicion: str | None = None
    if ctx.counts and item_level and reason is None:
        if count > rules.max_scans:
            new_suspicion = COUNT
        elif ctx.region_code is not None:
            prev = previous_located_scan(_session(session), code.run_id, code.serial, now)
            queued = pending.located if pending is not None else None
            if queued is not None and (prev is None or queued[1] >= prev[1]):
                prev = queued  # this process's latest located scan is not written yet
            if prev is not None and too_fast(rules, prev[0], prev[1], ctx.region_code, now):
                new_suspicion = DISTANCE
    reason = reason or new_suspicion
    if not item_level:
        reason = None
    # Only opening a recall sets the status, so a recalled batch has its notice.
    recalled = row.batch_status == BatchStatus.RECALLED
    if row.void_id is not None:
        verdict = Verdict.VOIDED.value
    elif recalled:
        verdict = Verdict.RECALLED.value
    elif reason is not None:
        verdict = Verdict.SUSPICIOUS.value
    else:
        verdict = Verdict.GENUINE.value

    first_at = row.first_scan_at
    first_region = row.first_region_code
    if first_at is None and pending is not None:
        first_at, first_region = pending.first_at, pending.first_region
    if first_at is None and ctx.counts:
        first_at, first_region = now, ctx.region_code
    key = (code.run_id, int(row.events_stamp or 0), int(row.media_stamp or 0))
    content = cache.get(key)
    if content is None:
        # The template is fixed when a run is issued: read it only to build the content.
        db = _session(session)
        template = db.scalar(select(LabelRun.template).where(LabelRun.id == code.run_id))
        content = PublicContent(build_content(db, row.batch_id, template))
        cache.put(key, content)
    return Resolution(
        verdict=verdict,
        facts=ScanFacts(
            verdict=verdict,
            run_id=code.run_id,
            serial=code.serial,
            enterprise_id=row.enterprise_id,
            batch_id=row.batch_id,
            product_id=row.product_id,
            new_suspicion=new_suspicion if item_level else None,
        ),
        scan_count=count,
        first_scan_at=first_at,
        first_region_code=first_region,
        suspicious_reason=reason,
        recall=(
            {
                "level": row.recall_level,
                "notice": row.public_notice,
                "opened_at": row.opened_at.isoformat() if row.opened_at else None,
                "opened_on": _day(row.opened_at),
            }
            if recalled
            else None
        ),
        voided=row.void_id is not None,
        void_reason=row.void_reason if row.void_id is not None else None,
        level=row.level,
        content=content,
    )


def public_head(res: Resolution) -> dict[str, Any]:
    """The per-scan part of the JSON view: verdict, scan, suspicion, recall, void, level.

    A counterfeit answer is a constant: nothing in it depends on what was wrong.
    """
    if not res.genuine_code:
        return {"verdict": res.verdict}
    first_region = res.first_region_code
    return {
        "verdict": res.verdict,
        "scan": {
            "count": res.scan_count,
            "first_scan": res.is_first_scan,
            "first_scan_at": res.first_scan_at.isoformat() if res.first_scan_at else None,
            "first_region_code": first_region,
            "first_region_name": regions.full_name(first_region) if first_region else None,
        },
        "suspicious_reason": res.suspicious_reason,
        "recall": res.recall,
        "voided": res.voided,
        "level": res.level,
    }
