"""Schemas of the scan API (resolve, device scans) and of device registration."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from trace.api.schemas.base import StrictSchema, id_field, length, region_code_field
from trace.models.enums import DeviceKind, Verdict

# -- resolve output (documentation: the hot path builds plain dicts, see services.resolve) ----


class ScanSummaryOut(Schema):
    count = fields.Integer(metadata={"description": "Scans of this code, this one included."})
    first_scan = fields.Boolean()
    first_scan_at = fields.DateTime(allow_none=True)
    first_region_code = fields.String(allow_none=True)
    first_region_name = fields.String(allow_none=True)


class PublicRecallOut(Schema):
    level = fields.String()
    notice = fields.String()
    opened_at = fields.DateTime()
    opened_on = fields.Date()


class PublicProductOut(Schema):
    name = fields.String()
    category = fields.String()
    specification = fields.String()
    brand = fields.String()
    batch_no = fields.String()


class PublicProducerOut(Schema):
    name = fields.String()
    wechat_account = fields.String()
    region = fields.String()


class PublicOriginOut(Schema):
    region_code = fields.String()
    province = fields.String()
    city = fields.String()
    county = fields.String()
    township = fields.String()
    village = fields.String()
    site = fields.String()


class PublicEventOut(Schema):
    id = fields.Integer()
    type = fields.String()
    section = fields.String()
    date = fields.Date()
    occurred_at = fields.DateTime()
    place = fields.String()
    actor = fields.String()
    note = fields.String()
    details = fields.Dict()
    correction = fields.String(allow_none=True)
    phi = fields.Dict(metadata={"description": "Pesticides: days, safe_from, respected."})


class PublicMediaOut(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "image, video or document"})
    content_type = fields.String()
    caption = fields.String()
    event_id = fields.Integer(allow_none=True)
    size = fields.Integer()
    poster_id = fields.Integer(allow_none=True)


class ResolveOut(Schema):
    """A counterfeit answer is exactly ``{"verdict": "counterfeit"}``, whatever was wrong.
    Sections the label run does not publish are absent."""

    verdict = fields.String(validate=validate.OneOf([v.value for v in Verdict]))
    scan = fields.Nested(ScanSummaryOut)
    suspicious_reason = fields.String(
        allow_none=True, metadata={"description": "count or distance"}
    )
    recall = fields.Nested(PublicRecallOut, allow_none=True)
    voided = fields.Boolean()
    level = fields.String(metadata={"description": "item or batch"})
    product = fields.Nested(PublicProductOut)
    producer = fields.Nested(PublicProducerOut)
    origin = fields.Nested(PublicOriginOut)
    dates = fields.Dict()
    grade = fields.String()
    timeline = fields.List(fields.Nested(PublicEventOut))
    inspections = fields.List(fields.Nested(PublicEventOut))
    certificates = fields.List(fields.Nested(PublicEventOut))
    media = fields.List(fields.Nested(PublicMediaOut))


# -- device scans ------------------------------------------------------------------------------


class DeviceScanIn(StrictSchema):
    code = fields.String(
        required=True,
        validate=length(300, 1),
        metadata={"description": "The code, or the label's whole QR URL as a scanner reads it."},
    )
    latitude = fields.Float(validate=validate.Range(min=-90, max=90), allow_none=True)
    longitude = fields.Float(validate=validate.Range(min=-180, max=180), allow_none=True)


class DeviceScanOut(ResolveOut):
    scan_id = fields.Integer(allow_none=True)
    channel = fields.String()
    region_code = fields.String()


# -- devices -----------------------------------------------------------------------------------


class DeviceIn(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in DeviceKind]))
    name = fields.String(required=True, validate=length(120, 1))
    region_code = region_code_field(required=True)
    enterprise_id = id_field(
        allow_none=True, metadata={"description": "Platform administrators only."}
    )


class DevicePatch(StrictSchema):
    name = fields.String(validate=length(120, 1))
    region_code = region_code_field()
    is_active = fields.Boolean()


class DeviceOut(Schema):
    id = fields.Integer()
    kind = fields.String()
    name = fields.String()
    region_code = fields.String()
    enterprise_id = fields.Integer(allow_none=True)
    is_active = fields.Boolean()
    created_at = fields.DateTime()


class DeviceTokenOut(DeviceOut):
    token = fields.String(metadata={"description": "Shown once; only its hash is stored."})
