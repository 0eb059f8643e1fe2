from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from trace.api.schemas.base import StrictSchema, id_field, length
from trace.labels.writers import FORMATS
from trace.models.enums import LabelLevel
from trace.validation import is_valid_host


class TemplateIn(StrictSchema):
    label = fields.List(fields.String(), metadata={"description": "Fields printed on the label"})
    public = fields.List(fields.String(), metadata={"description": "Sections the scan page shows"})


class LabelRunIn(StrictSchema):
    batch_id = id_field(required=True)
    count = fields.Integer(required=True, metadata={"description": "Labels (item level: codes)"})
    profile = fields.String(required=True, validate=length(80, 1))
    format = fields.String(required=True, validate=validate.OneOf(FORMATS))
    level = fields.String(
        load_default=LabelLevel.ITEM.value, validate=validate.OneOf([lv.value for lv in LabelLevel])
    )
    template = fields.Nested(TemplateIn, load_default=None)


class LabelRunOut(StrictSchema):
    id = fields.Integer()
    batch_id = fields.Integer()
    level = fields.String()
    count = fields.Integer()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    key_version = fields.Integer()
    profile = fields.String()
    format = fields.String()
    template = fields.Dict()
    status = fields.String()
    failure = fields.String(allow_none=True)
    created_at = fields.DateTime()
    file_url = fields.Function(lambda r: f"/api/v1/label-runs/{r.id}/file")


class LabelRunListItem(LabelRunOut):
    voided = fields.Integer()
    scanned = fields.Integer()


class LabelRunQuery(StrictSchema):
    batch_id = id_field(strict=False)


class FileQuery(StrictSchema):
    format = fields.String(validate=validate.OneOf(FORMATS))
    profile = fields.String(validate=length(80, 1))
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    copies = fields.Integer(load_default=1, metadata={"description": "Batch-level runs only"})


def _host(value: str) -> None:
    if not is_valid_host(value):
        raise ValidationError("Not a host name or an IP address.")


class PrintIn(StrictSchema):
    host = fields.String(required=True, validate=[length(253, 1), _host])
    port = fields.Integer(load_default=9100, validate=validate.Range(min=1, max=65535))
    format = fields.String(validate=validate.OneOf(FORMATS))
    profile = fields.String(validate=length(80, 1))
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    copies = fields.Integer(load_default=1)


class PrintOut(StrictSchema):
    run_id = fields.Integer()
    bytes_sent = fields.Integer()
    host = fields.String()
    port = fields.Integer()


class VoidIn(StrictSchema):
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    code = fields.String(metadata={"description": "Void the one code printed on a label"})
    reason = fields.String(load_default="", validate=length(300))


class VoidOut(StrictSchema):
    id = fields.Integer()
    run_id = fields.Integer()
    first_serial = fields.Integer()
    last_serial = fields.Integer()
    reason = fields.String()
    created_at = fields.DateTime()
