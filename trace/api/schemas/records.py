from __future__ import annotations

from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from trace.api.schemas.base import (
    StrictSchema,
    id_field,
    length,
    plausible_time,
    region_code_field,
)
from trace.models.enums import BatchStatus, EventType
from trace.validation import is_valid_gtin

#: A time typed without an offset is taken as Beijing time, which is what a clerk means.
CHINA_TIME = timezone(timedelta(hours=8))
MAX_QUANTITY = Decimal("99999999999.999")
MAX_AREA_MU = Decimal("9999999999.99")


class ProductIn(StrictSchema):
    name = fields.String(required=True, validate=length(200, 1))
    category = fields.String(validate=length(100))
    specification = fields.String(validate=length(200))
    brand = fields.String(validate=length(100))
    gtin = fields.String(allow_none=True)

    @validates("gtin")
    def _gtin(self, value: str | None, **_: object) -> None:
        if value is not None and not is_valid_gtin(value):
            raise ValidationError("Not a GTIN-8/12/13/14 with a correct check digit.")


class ProductOut(StrictSchema):
    id = fields.Integer()
    enterprise_id = fields.Integer()
    name = fields.String()
    category = fields.String()
    specification = fields.String()
    brand = fields.String()
    gtin = fields.String(allow_none=True)
    created_at = fields.DateTime()


class SiteIn(StrictSchema):
    name = fields.String(required=True, validate=length(200, 1))
    region_code = region_code_field(required=True)
    township = fields.String(validate=length(100))
    village = fields.String(validate=length(100))
    latitude = fields.Float(allow_none=True, validate=validate.Range(min=-90, max=90))
    longitude = fields.Float(allow_none=True, validate=validate.Range(min=-180, max=180))
    # Numeric(12, 2) in the database: rounded here so a write answers what a read will.
    area_mu = fields.Decimal(
        allow_none=True,
        as_string=True,
        places=2,
        validate=validate.Range(min=0, max=MAX_AREA_MU),
    )


class SiteOut(StrictSchema):
    id = fields.Integer()
    enterprise_id = fields.Integer()
    name = fields.String()
    region_code = fields.String()
    township = fields.String()
    village = fields.String()
    latitude = fields.Float(allow_none=True)
    longitude = fields.Float(allow_none=True)
    area_mu = fields.Decimal(allow_none=True, as_string=True)
    created_at = fields.DateTime()


class BatchIn(StrictSchema):
    product_id = id_field(required=True)
    site_id = id_field(allow_none=True)
    batch_no = fields.String(required=True, validate=validate.Regexp(r"^[\w.\-/]{1,64}\Z"))
    harvest_date = fields.Date(allow_none=True)
    pack_date = fields.Date(allow_none=True)
    # Numeric(14, 3) in the database: rounded here so a write answers what a read will.
    quantity = fields.Decimal(
        allow_none=True,
        as_string=True,
        places=3,
        validate=validate.Range(min=0, max=MAX_QUANTITY),
    )
    unit = fields.String(validate=length(20, 1))
    grade = fields.String(validate=length(40))

    @validates_schema
    def _dates(self, data: dict[str, Any], **_: Any) -> None:
        harvest, pack = data.get("harvest_date"), data.get("pack_date")
        if harvest and pack and pack < harvest:
            raise ValidationError("Packing cannot come before harvest.", "pack_date")


class BatchPatch(BatchIn):
    status = fields.String(
        validate=validate.OneOf(
            [BatchStatus.OPEN.value, BatchStatus.SEALED.value, BatchStatus.HELD.value]
        )
    )


class BatchOut(StrictSchema):
    id = fields.Integer()
    enterprise_id = fields.Integer()
    product_id = fields.Integer()
    site_id = fields.Integer(allow_none=True)
    batch_no = fields.String()
    harvest_date = fields.Date(allow_none=True)
    pack_date = fields.Date(allow_none=True)
    quantity = fields.Decimal(allow_none=True, as_string=True)
    unit = fields.String()
    grade = fields.String()
    status = fields.String()
    labelled = fields.Function(lambda b: b.labelled_at is not None)
    flags = fields.Method("_flags")
    created_at = fields.DateTime()

    def _flags(self, batch: Any) -> list[str]:
        return ["pre_harvest_interval_violation"] if batch.phi_violation else []


class BatchDetailOut(BatchOut):
    product = fields.Nested(ProductOut)
    site = fields.Nested(SiteOut, allow_none=True)
    phi_findings = fields.List(fields.Dict(), dump_default=list)


class EventIn(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf([t.value for t in EventType]))
    occurred_at = fields.AwareDateTime(
        required=True, default_timezone=CHINA_TIME, validate=plausible_time
    )
    place = fields.String(validate=length(200))
    actor = fields.String(validate=length(120))
    note = fields.String(validate=length(4000))
    details = fields.Dict(keys=fields.String(), load_default=dict)
    corrects_id = id_field(allow_none=True)
    correction_reason = fields.String(allow_none=True, validate=length(1000))


class EventPatch(StrictSchema):
    occurred_at = fields.AwareDateTime(default_timezone=CHINA_TIME, validate=plausible_time)
    place = fields.String(validate=length(200))
    actor = fields.String(validate=length(120))
    note = fields.String(validate=length(4000))
    details = fields.Dict(keys=fields.String())


class EventOut(StrictSchema):
    id = fields.Integer()
    batch_id = fields.Integer()
    type = fields.String()
    occurred_at = fields.DateTime()
    place = fields.String()
    actor = fields.String()
    note = fields.String()
    details = fields.Dict()
    corrects_id = fields.Integer(allow_none=True)
    correction_reason = fields.String(allow_none=True)
    corrected_by_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class AttachmentOut(StrictSchema):
    id = fields.Integer()
    batch_id = fields.Integer()
    event_id = fields.Integer(allow_none=True)
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    caption = fields.String()
    is_public = fields.Boolean()
    content_url = fields.Function(lambda a: f"/api/v1/attachments/{a.id}/content")
    created_at = fields.DateTime()


class AttachmentForm(StrictSchema):
    event_id = id_field(strict=False, allow_none=True)
    caption = fields.String(load_default="", validate=length(300))
    is_public = fields.Boolean(load_default=True)


class BatchQuery(StrictSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in BatchStatus]))
    product_id = id_field(strict=False)
