"""Label runs: issue a contiguous serial range (one row, not one per label), write its
print file, void and reprint ranges.

Codes are deterministic from (key version, run id, serial), so a run's file can be
written again by any worker at any time: printing is separate from issuing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from trace.crypto.codes import mint
from trace.crypto.keyring import Keyring
from trace.db import utcnow
from trace.errors import Conflict, NotFound, UpstreamUnavailable, ValidationFailed
from trace.labels.content import LabelChunk, LabelContent, LabelLine, iter_chunks
from trace.labels.profiles import PrinterProfile, ProfileError, load_profile
from trace.labels.writers import FORMATS, write_labels
from trace.models import Batch, CodeState, Enterprise, LabelRun, LabelVoid
from trace.models.enums import BatchStatus, LabelLevel, RunStatus
from trace.regions import lookup as regions
from trace.services import audit, templates
from trace.services.actors import Actor
from trace.services.scope import get_visible, get_writable, scoped

#: Serials live in 32 bits of the code block.
MAX_SERIAL = 2**32 - 1


class PrinterUnavailable(UpstreamUnavailable):
    title = "Printer unavailable"


@dataclass(frozen=True)
class RunRequest:
    batch_id: int
    count: int
    profile: str
    format: str
    level: str = LabelLevel.ITEM.value
    template: dict[str, Any] | None = None


def _profile(name: str) -> PrinterProfile:
    try:
        return load_profile(name)
    except (ProfileError, FileNotFoundError, OSError) as exc:
        raise ValidationFailed(
            "Unknown printer profile.", fields={"profile": [f"No usable profile {name!r}."]}
        ) from exc


def _check_request(req: RunRequest, max_count: int) -> PrinterProfile:
    problems: dict[str, list[str]] = {}
    codes = 1 if req.level == LabelLevel.BATCH.value else req.count
    if req.level not in (LabelLevel.ITEM.value, LabelLevel.BATCH.value):
        problems["level"] = ["'item' (one code per item) or 'batch' (one code per batch)."]
    if req.count <= 0 or codes > max_count:
        problems["count"] = [f"Between 1 and {max_count} labels per run."]
    if req.format not in FORMATS:
        problems["format"] = [f"One of {', '.join(FORMATS)}."]
    if problems:
        raise ValidationFailed("Invalid label run.", fields=problems)
    profile = _profile(req.profile)
    if not profile.supports(req.format):
        raise ValidationFailed(
            "The printer profile cannot print this format.",
            fields={"format": [f"{profile.name} supports {', '.join(profile.formats)}."]},
        )
    return profile


def _reserve_serials(session: Session, enterprise_id: int, count: int) -> int:
    """Take `count` serials atomically. The UPDATE row-locks the enterprise until commit,
    so concurrent runs of one enterprise get disjoint ranges on PostgreSQL; SQLite
    serialises writers anyway."""
    new_next = session.execute(
        update(Enterprise)
        .where(Enterprise.id == enterprise_id)
        .values(next_serial=Enterprise.next_serial + count)
        .returning(Enterprise.next_serial)
    ).scalar_one()
    first = int(new_next) - count
    if first + count - 1 > MAX_SERIAL:
        raise Conflict("This enterprise has used up its serial space.")
    return first


def issue_run(
    session: Session,
    actor: Actor,
    keyring: Keyring,
    req: RunRequest,
    max_count: int,
    status: RunStatus = RunStatus.ISSUED,
) -> LabelRun:
    """Record a run. `status` is ISSUING when the caller writes a file before the codes
    may resolve (CLI), ISSUED when the file is produced on demand (API)."""
    batch = get_writable(session, Batch, req.batch_id, actor)
    if batch.status == BatchStatus.RECALLED.value:
        raise Conflict(
            "The batch is recalled: no new labels can be issued for it.",
            fields={"batch_id": ["Recalled."]},
        )
    _check_request(req, max_count)
    template = templates.normalise(req.template)
    count = 1 if req.level == LabelLevel.BATCH.value else req.count
    first = _reserve_serials(session, batch.enterprise_id, count)
    run = LabelRun(
        enterprise_id=batch.enterprise_id,
        batch_id=batch.id,
        level=req.level,
        count=count,
        first_serial=first,
        key_version=keyring.current_version,
        profile=req.profile,
        format=req.format,
        template=template,
        status=status.value,
        created_by=actor.user_id,
    )
    session.add(run)
    if batch.labelled_at is None:
        batch.labelled_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor,
        "issue",
        "label_run",
        run.id,
        {
            "batch_id": batch.id,
            "count": count,
            "first_serial": first,
            "key_version": run.key_version,
            "format": req.format,
        },
        batch.enterprise_id,
    )
    return run


def mark_issued(session: Session, run: LabelRun) -> None:
    run.status = RunStatus.ISSUED.value
    session.flush()


def mark_failed(session: Session, run: LabelRun, reason: str) -> None:
    """The range stays taken: a failed run's serials are never handed out again."""
    run.status = RunStatus.FAILED.value
    run.failure = reason[:1000]
    session.flush()


def get_printable_run(session: Session, actor: Actor, run_id: int) -> LabelRun:
    """A run whose labels the actor may print or download: its own enterprise's only.

    A print file is a list of genuine codes -- what a counterfeiter needs -- and printing
    makes the server connect to a host of the caller's choosing, so reading a run (which
    regulators may) is not enough."""
    return get_writable(session, LabelRun, run_id, actor)


def get_run(session: Session, actor: Actor, run_id: int) -> LabelRun:
    return get_visible(session, LabelRun, run_id, actor)


def list_runs(session: Session, actor: Actor, batch_id: int | None = None) -> list[dict[str, Any]]:
    """Runs with their counts: labels, voided, codes scanned at least once."""
    stmt = scoped(select(LabelRun).order_by(LabelRun.id.desc()), actor, LabelRun.enterprise_id)
    if batch_id is not None:
        stmt = stmt.where(LabelRun.batch_id == batch_id)
    runs = list(session.scalars(stmt))
    ids = [r.id for r in runs]
    voided: dict[int, int] = {}
    scanned: dict[int, int] = {}
    if ids:
        for run_id, n in session.execute(
            select(LabelVoid.run_id, func.sum(LabelVoid.last_serial - LabelVoid.first_serial + 1))
            .where(LabelVoid.run_id.in_(ids))
            .group_by(LabelVoid.run_id)
        ):
            voided[run_id] = int(n or 0)
        for run_id, n in session.execute(
            select(CodeState.run_id, func.count())
            .where(CodeState.run_id.in_(ids), CodeState.scan_count > 0)
            .group_by(CodeState.run_id)
        ):
            scanned[run_id] = int(n)
    return [
        {"run": r, "voided": voided.get(r.id, 0), "scanned": scanned.get(r.id, 0)} for r in runs
    ]


def _check_range(
    run: LabelRun,
    first: int | None,
    last: int | None,
    first_field: str = "first_serial",
    last_field: str = "last_serial",
) -> tuple[int, int]:
    lo = run.first_serial if first is None else first
    hi = run.last_serial if last is None else last
    problems: dict[str, list[str]] = {}
    if not run.first_serial <= lo <= run.last_serial:
        problems[first_field] = [f"Within {run.first_serial}..{run.last_serial}."]
    if not run.first_serial <= hi <= run.last_serial:
        problems[last_field] = [f"Within {run.first_serial}..{run.last_serial}."]
    if not problems and hi < lo:
        problems[last_field] = ["Not before the first serial."]
    if problems:
        raise ValidationFailed("Serial range outside the run.", fields=problems)
    return lo, hi


def void_range(
    session: Session,
    actor: Actor,
    run_id: int,
    first_serial: int | None,
    last_serial: int | None,
    reason: str,
) -> LabelVoid:
    run = get_writable(session, LabelRun, run_id, actor)
    lo, hi = _check_range(run, first_serial, last_serial)
    void = LabelVoid(
        run_id=run.id, first_serial=lo, last_serial=hi, reason=reason, created_by=actor.user_id
    )
    session.add(void)
    session.flush()
    audit.record(
        session,
        actor,
        "void",
        "label_run",
        run.id,
        {"first_serial": lo, "last_serial": hi, "reason": reason},
        run.enterprise_id,
    )
    return void


def voided_ranges(session: Session, run_id: int) -> list[tuple[int, int]]:
    stmt = select(LabelVoid.first_serial, LabelVoid.last_serial).where(LabelVoid.run_id == run_id)
    return [(int(a), int(b)) for a, b in session.execute(stmt)]


def is_voided(session: Session, run_id: int, serial: int) -> bool:
    stmt = (
        select(LabelVoid.id)
        .where(
            LabelVoid.run_id == run_id,
            LabelVoid.first_serial <= serial,
            LabelVoid.last_serial >= serial,
        )
        .limit(1)
    )
    return session.scalar(stmt) is not None


def code_of(keyring: Keyring, run: LabelRun, serial: int) -> str:
    return mint(keyring, run.id, serial, run.key_version)


# -- print files ----------------------------------------------------------------------------


def label_content(batch: Batch, template: dict[str, Any]) -> LabelContent:
    """The text that is the same on every label of a run, computed once per run."""
    chosen = template.get("label", templates.DEFAULT_TEMPLATE["label"])
    site = batch.site
    origin = ""
    origin_shorter: tuple[str, ...] = ()
    if site is not None:
        township = site.township or ""
        origin = regions.full_name(site.region_code) + township
        # Less specific forms for a narrow label: without the province, then the city.
        names = regions.full_name(site.region_code, sep="\n").split("\n")
        origin_shorter = tuple("".join(names[i:]) + township for i in range(1, len(names)))
    # (caption, value): the layout prints the caption when there is room and drops it
    # first when there is not (content.compute_layout), so it is never pre-joined here.
    values = {
        "product": ("", batch.product.name),
        "batch_no": ("批次", batch.batch_no),
        "producer": ("", batch.enterprise.name),
        "harvest_date": ("采收", batch.harvest_date.isoformat() if batch.harvest_date else ""),
        "origin": ("产地", origin),
        "grade": ("等级", batch.grade or ""),
    }
    shorter = {"origin": origin_shorter}
    lines = [
        LabelLine(key, *values[key], shorter.get(key, ()))
        for key in chosen
        if key in values and values[key][1]
    ]
    return LabelContent(
        lines=lines, show_code_text="code_text" in chosen, show_serial="serial" in chosen
    )


def _without_voids(
    chunks: Iterator[LabelChunk], voids: list[tuple[int, int]]
) -> Iterator[LabelChunk]:
    for chunk in chunks:
        if voids:
            keep = np.ones(len(chunk.serials), dtype=bool)
            for lo, hi in voids:
                keep &= ~((chunk.serials >= lo) & (chunk.serials <= hi))
            if not keep.all():
                chunk = LabelChunk(
                    serials=chunk.serials[keep],
                    codes=chunk.codes[keep],
                    payloads=chunk.payloads[keep],
                )
        if len(chunk.serials):
            yield chunk


def _repeat(chunks: Iterator[LabelChunk], copies: int, block: int = 4096) -> Iterator[LabelChunk]:
    """Batch-level runs print one code on `copies` labels."""
    for chunk in chunks:
        left = copies
        while left > 0:
            k = min(left, block)
            yield LabelChunk(
                serials=np.repeat(chunk.serials, k),
                codes=np.repeat(chunk.codes, k),
                payloads=np.repeat(chunk.payloads, k),
            )
            left -= k


@dataclass(frozen=True)
class PrintJob:
    """Everything needed to write a run's file, loaded up front so writing needs no DB."""

    run_id: int
    key_version: int
    first: int
    last: int
    fmt: str
    profile: PrinterProfile
    content: LabelContent
    voids: list[tuple[int, int]]
    copies: int


def prepare_job(
    session: Session,
    run: LabelRun,
    *,
    fmt: str | None = None,
    profile: str | None = None,
    first: int | None = None,
    last: int | None = None,
    copies: int = 1,
) -> PrintJob:
    if run.status == RunStatus.FAILED.value:
        raise Conflict("This run failed; its codes were never issued. Issue a new run.")
    fmt = fmt or run.format
    req = RunRequest(batch_id=run.batch_id, count=1, profile=profile or run.profile, format=fmt)
    printer = _check_request(req, max_count=1)
    lo, hi = _check_range(run, first, last)
    if run.level == LabelLevel.BATCH.value and not 1 <= copies <= 100_000:
        raise ValidationFailed("Invalid copies.", fields={"copies": ["Between 1 and 100000."]})
    batch = session.get(Batch, run.batch_id)
    if batch is None:
        raise NotFound("Batch not found.")
    return PrintJob(
        run_id=run.id,
        key_version=run.key_version,
        first=lo,
        last=hi,
        fmt=fmt,
        profile=printer,
        content=label_content(batch, run.template),
        voids=voided_ranges(session, run.id),
        copies=copies if run.level == LabelLevel.BATCH.value else 1,
    )


def write_job(job: PrintJob, keyring: Keyring, base_url: str, out: BinaryIO) -> int:
    """Stream the job's labels to `out`; memory does not grow with the count."""
    chunks: Iterator[LabelChunk] = iter_chunks(
        keyring,
        job.run_id,
        job.first,
        job.last - job.first + 1,
        base_url,
        key_version=job.key_version,
    )
    chunks = _without_voids(chunks, job.voids)
    if job.copies > 1:
        chunks = _repeat(chunks, job.copies)
    return write_labels(job.fmt, job.profile, job.content, chunks, out)


def write_job_file(job: PrintJob, keyring: Keyring, base_url: str, path: Path) -> int:
    """Write to a temporary file beside `path` and rename: a crash never leaves half a file
    under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as out:
            written = write_job(job, keyring, base_url, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
        return written
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
