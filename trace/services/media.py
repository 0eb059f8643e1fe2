"""Photos and videos attached to batches and events."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import IO

import filetype
from sqlalchemy import select
from sqlalchemy.orm import Session

from trace.errors import PayloadTooLarge, ValidationFailed
from trace.models import Attachment, Batch, TraceEvent
from trace.services import audit
from trace.services.actors import Actor
from trace.services.scope import get_visible, get_writable
from trace.services.storage import LocalStorage, Storage, TooLarge

#: What producers upload: photos, videos, and scanned certificates/reports.
ALLOWED_TYPES = {
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "video/mp4",
    "video/webm",
    "video/quicktime",
    "application/pdf",
}


def clean_filename(name: str) -> str:
    """The name shown to people: no directories, no control, format or surrogate characters
    (PostgreSQL refuses NUL; a right-to-left override would disguise the extension)."""
    base = re.split(r"[/\\]", name)[-1]
    kept = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return kept[:255] or "upload"


def sniff(head: bytes) -> str | None:
    """Content type from the bytes themselves; the client's claim is not trusted."""
    kind = filetype.guess(head)
    return kind.mime if kind is not None else None


def add_attachment(
    session: Session,
    storage: Storage,
    actor: Actor,
    batch_id: int,
    stream: IO[bytes],
    filename: str,
    limit: int,
    event_id: int | None = None,
    caption: str = "",
    is_public: bool = True,
) -> Attachment:
    batch = get_writable(session, Batch, batch_id, actor)
    if event_id is not None:
        event = session.get(TraceEvent, event_id)
        if event is None or event.batch_id != batch.id:
            raise ValidationFailed(
                "Unknown event.", fields={"event_id": ["No such event in this batch."]}
            )
    try:
        stored = storage.save(stream, limit)
    except TooLarge as exc:
        raise PayloadTooLarge(
            f"Uploads are limited to {limit // (1024 * 1024)} MB.", fields={"file": [str(exc)]}
        ) from exc
    content_type = sniff(stored.head)
    if content_type not in ALLOWED_TYPES:
        storage.delete(stored.key)
        raise ValidationFailed(
            "Unsupported file type.",
            fields={
                "file": [
                    f"Detected {content_type or 'unknown'}; allowed: photos (JPEG, PNG, "
                    "WebP, GIF), videos (MP4, WebM, MOV) and PDF."
                ]
            },
        )
    attachment = Attachment(
        enterprise_id=batch.enterprise_id,
        batch_id=batch.id,
        event_id=event_id,
        filename=clean_filename(filename),
        content_type=content_type,
        size=stored.size,
        sha256=stored.sha256,
        storage_key=stored.key,
        caption=caption,
        is_public=is_public,
    )
    session.add(attachment)
    session.flush()
    audit.record(
        session,
        actor,
        "create",
        "attachment",
        attachment.id,
        {"batch_id": batch.id, "sha256": stored.sha256, "size": stored.size},
        batch.enterprise_id,
    )
    return attachment


def list_attachments(session: Session, actor: Actor, batch_id: int) -> list[Attachment]:
    batch = get_visible(session, Batch, batch_id, actor)
    stmt = select(Attachment).where(Attachment.batch_id == batch.id).order_by(Attachment.id)
    return list(session.scalars(stmt))


def get_attachment(session: Session, actor: Actor, attachment_id: int) -> Attachment:
    return get_visible(session, Attachment, attachment_id, actor)


# -- keeping the media directory tidy -------------------------------------------------------


@dataclass(frozen=True)
class Sweep:
    files: int
    bytes: int
    temp_files: int


def sweep_unreferenced(
    session: Session, storage: LocalStorage, older_than_seconds: float, dry_run: bool = False
) -> Sweep:
    """Remove stored files no attachment row refers to, and stale upload temp files.

    Such files are left when a request fails after its upload was stored (the row's
    insert or the commit failed) or a worker is killed mid-upload. Only files older than
    ``older_than_seconds`` are touched, so an upload whose row is being committed right
    now is never raced; a file some attachment still names is never removed.
    """
    referenced = set(session.scalars(select(Attachment.storage_key).distinct()))
    files = size = 0
    for key, length in storage.files_older_than(older_than_seconds):
        if key in referenced:
            continue
        files += 1
        size += length
        if not dry_run:
            storage.delete(key)
    temps = storage.remove_stale_uploads(older_than_seconds, dry_run)
    return Sweep(files=files, bytes=size, temp_files=temps)
