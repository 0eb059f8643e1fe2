"""Enterprises' master data: products, origin sites and batches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from trace.errors import Conflict, ValidationFailed
from trace.models import Batch, Product, Site
from trace.models.enums import BatchStatus
from trace.services import audit, events
from trace.services.actors import Actor
from trace.services.scope import get_visible, get_writable, is_storable_id, scoped


def _apply(obj: object, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        setattr(obj, key, value)


def _audit_payload(changes: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v if isinstance(v, str | int | float | bool | None) else str(v))
        for k, v in changes.items()
    }


# -- products ---------------------------------------------------------------------------


def create_product(session: Session, actor: Actor, data: dict[str, Any]) -> Product:
    enterprise_id = actor.require_writer()
    product = Product(enterprise_id=enterprise_id, **data)
    session.add(product)
    session.flush()
    audit.record(
        session, actor, "create", "product", product.id, _audit_payload(data), enterprise_id
    )
    return product


def list_products(session: Session, actor: Actor) -> list[Product]:
    stmt = scoped(select(Product).order_by(Product.id), actor, Product.enterprise_id)
    return list(session.scalars(stmt))


def get_product(session: Session, actor: Actor, product_id: int) -> Product:
    return get_visible(session, Product, product_id, actor)


def update_product(
    session: Session, actor: Actor, product_id: int, changes: dict[str, Any]
) -> Product:
    product = get_writable(session, Product, product_id, actor)
    _apply(product, changes)
    session.flush()
    audit.record(
        session,
        actor,
        "update",
        "product",
        product.id,
        _audit_payload(changes),
        product.enterprise_id,
    )
    return product


# -- sites ------------------------------------------------------------------------------


def create_site(session: Session, actor: Actor, data: dict[str, Any]) -> Site:
    enterprise_id = actor.require_writer()
    site = Site(enterprise_id=enterprise_id, **data)
    session.add(site)
    session.flush()
    audit.record(session, actor, "create", "site", site.id, _audit_payload(data), enterprise_id)
    return site


def list_sites(session: Session, actor: Actor) -> list[Site]:
    stmt = scoped(select(Site).order_by(Site.id), actor, Site.enterprise_id)
    return list(session.scalars(stmt))


def get_site(session: Session, actor: Actor, site_id: int) -> Site:
    return get_visible(session, Site, site_id, actor)


def update_site(session: Session, actor: Actor, site_id: int, changes: dict[str, Any]) -> Site:
    site = get_writable(session, Site, site_id, actor)
    _apply(site, changes)
    session.flush()
    audit.record(
        session, actor, "update", "site", site.id, _audit_payload(changes), site.enterprise_id
    )
    return site


# -- batches ----------------------------------------------------------------------------


def _check_references(session: Session, actor: Actor, data: dict[str, Any]) -> None:
    """Products and sites must be the caller's own: another tenant's id is 'not found'."""
    errors: dict[str, list[str]] = {}
    models: tuple[tuple[str, type[Product] | type[Site]], ...] = (
        ("product_id", Product),
        ("site_id", Site),
    )
    for field, model in models:
        ref = data.get(field)
        if ref is None:
            continue
        owner = (
            session.scalar(select(model.enterprise_id).where(model.id == ref))
            if is_storable_id(ref)
            else None
        )
        if owner is None or owner != actor.enterprise_id:
            errors[field] = [f"No {model.__name__.lower()} {ref} in your enterprise."]
    if errors:
        raise ValidationFailed("Unknown references.", fields=errors)


def _batch_no_taken(session: Session, enterprise_id: int, batch_no: str) -> bool:
    stmt = select(func.count()).where(
        Batch.enterprise_id == enterprise_id, Batch.batch_no == batch_no
    )
    return bool(session.scalar(stmt))


def _batch_no_conflict(batch_no: str | None) -> Conflict:
    """The one answer to a batch number the enterprise already uses (found by the check,
    or by the unique constraint when a concurrent request took it first)."""
    taken = f"{batch_no} exists in your enterprise." if batch_no else "Already exists."
    return Conflict("Batch number already used.", fields={"batch_no": [taken]})


def create_batch(session: Session, actor: Actor, data: dict[str, Any]) -> Batch:
    enterprise_id = actor.require_writer()
    _check_references(session, actor, data)
    if _batch_no_taken(session, enterprise_id, data["batch_no"]):
        raise _batch_no_conflict(data["batch_no"])
    batch = Batch(enterprise_id=enterprise_id, status=BatchStatus.OPEN.value, **data)
    session.add(batch)
    _flush_batch_no(session, data["batch_no"])
    audit.record(session, actor, "create", "batch", batch.id, _audit_payload(data), enterprise_id)
    return batch


def _flush_batch_no(session: Session, batch_no: str | None) -> None:
    """Flush a new or renamed batch. The number was checked before, but a concurrent request
    may have taken it since: the unique constraint then answers, as a conflict."""
    try:
        session.flush()
    except IntegrityError as exc:
        raise _batch_no_conflict(batch_no) from exc


def list_batches(
    session: Session, actor: Actor, status: str | None = None, product_id: int | None = None
) -> list[Batch]:
    stmt = scoped(select(Batch).order_by(Batch.id.desc()), actor, Batch.enterprise_id)
    if status:
        stmt = stmt.where(Batch.status == status)
    if product_id:
        stmt = stmt.where(Batch.product_id == product_id)
    return list(session.scalars(stmt))


def get_batch(session: Session, actor: Actor, batch_id: int) -> Batch:
    return get_visible(session, Batch, batch_id, actor)


def update_batch(session: Session, actor: Actor, batch_id: int, changes: dict[str, Any]) -> Batch:
    batch = get_writable(session, Batch, batch_id, actor)
    if batch.labelled_at is not None:
        locked = set(changes) & {"product_id", "site_id", "batch_no", "harvest_date"}
        if locked:
            raise Conflict(
                "Labels exist for this batch: its identity can no longer be edited.",
                fields={
                    f: ["Locked after labelling; record a correction event."]
                    for f in sorted(locked)
                },
            )
    _check_references(session, actor, changes)
    if changes.get("status") == BatchStatus.RECALLED.value:
        raise ValidationFailed(
            "Open a recall instead.", fields={"status": ["'recalled' is set by opening a recall."]}
        )
    harvest = changes.get("harvest_date", batch.harvest_date)
    pack = changes.get("pack_date", batch.pack_date)
    if harvest and pack and pack < harvest:
        raise ValidationFailed(
            "Packing cannot come before harvest.",
            fields={"pack_date": [f"Before the harvest date {harvest.isoformat()}."]},
        )
    new_no = changes.get("batch_no")
    if (
        new_no is not None
        and new_no != batch.batch_no
        and _batch_no_taken(session, batch.enterprise_id, new_no)
    ):
        raise _batch_no_conflict(new_no)
    _apply(batch, changes)
    _flush_batch_no(session, new_no)
    if "harvest_date" in changes:  # without harvest events, the date decides the PHI check
        events.refresh_phi_flag(session, batch)
    audit.record(
        session, actor, "update", "batch", batch.id, _audit_payload(changes), batch.enterprise_id
    )
    return batch
