"""Tenant and jurisdiction filters: the one place that decides what an actor may read."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select, true
from sqlalchemy.orm import Session

from trace.errors import NotFound
from trace.models import Enterprise
from trace.services.actors import Actor

T = TypeVar("T")

#: Primary keys are 32-bit on every backend. A larger id (from a URL) cannot name a row,
#: and binding it would overflow the driver, so it is 'not found' before any query.
MAX_ID = 2**31 - 1


def is_storable_id(obj_id: int) -> bool:
    return 0 < obj_id <= MAX_ID


def enterprise_filter(actor: Actor, enterprise_id_column: Any) -> Any:
    """A WHERE clause limiting rows (by their enterprise_id column) to what `actor` may see."""
    if actor.is_platform_admin:
        return true()
    if actor.is_regulator:
        prefix = actor.region_prefix or ""
        in_region = select(Enterprise.id).where(Enterprise.region_code.startswith(prefix))
        return enterprise_id_column.in_(in_region.scalar_subquery())
    return enterprise_id_column == actor.enterprise_id


def scoped(stmt: Select[Any], actor: Actor, enterprise_id_column: Any) -> Select[Any]:
    return stmt.where(enterprise_filter(actor, enterprise_id_column))


def get_visible(session: Session, model: type[T], obj_id: int, actor: Actor) -> T:
    """Load one row the actor may see; anything else is 'not found', never 'forbidden',
    so that ids of other tenants' records reveal nothing."""
    if not is_storable_id(obj_id):
        raise NotFound(f"{model.__name__} {obj_id} not found.")
    column = model.enterprise_id  # type: ignore[attr-defined]
    stmt = scoped(select(model).where(model.id == obj_id), actor, column)  # type: ignore[attr-defined]
    obj = session.scalars(stmt).one_or_none()
    if obj is None:
        raise NotFound(f"{model.__name__} {obj_id} not found.")
    return obj


def get_writable(session: Session, model: type[T], obj_id: int, actor: Actor) -> T:
    """Load one row the actor's enterprise owns, for changing or referencing it."""
    enterprise_id = actor.require_writer()
    obj = session.get(model, obj_id) if is_storable_id(obj_id) else None
    if obj is None or obj.enterprise_id != enterprise_id:  # type: ignore[attr-defined]
        raise NotFound(f"{model.__name__} {obj_id} not found.")
    return obj
