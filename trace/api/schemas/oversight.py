"""Schemas of the regulator-facing API: analytics tables, alerts and recalls."""

from __future__ import annotations

from marshmallow import fields, validate

from trace.api.schemas.base import StrictSchema, id_field, length
from trace.models.enums import AlertStatus, RecallStatus
from trace.services.alerts import KINDS
from trace.services.analytics import GRANULARITIES, LEVELS, MAX_LIST_ROWS

_PREFIX = validate.Regexp(r"^(\d{2}){0,3}$", error="A region prefix of 2, 4 or 6 digits.")


class AnalyticsQuery(StrictSchema):
    first = fields.Date(
        data_key="from",
        metadata={
            "description": "First day (China time), inclusive. Default: 11 months "
            "before the current month's first day."
        },
    )
    last = fields.Date(
        data_key="to", metadata={"description": "Last day (China time), inclusive. Default: today."}
    )
    region = fields.String(
        validate=_PREFIX,
        metadata={
            "description": "Narrow to a region prefix inside your jurisdiction "
            "(drill-down). Regulators default to their jurisdiction."
        },
    )
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "csv: the same table as a UTF-8 (BOM) CSV file for Excel."},
    )
    lang = fields.String(
        load_default="zh",
        validate=validate.OneOf(["zh", "en"]),
        metadata={"description": "Language of CSV column headers."},
    )


class SeriesQuery(AnalyticsQuery):
    granularity = fields.String(load_default="day", validate=validate.OneOf(GRANULARITIES))


class RegionsQuery(AnalyticsQuery):
    level = fields.String(
        validate=validate.OneOf(list(LEVELS)),
        metadata={"description": "Compare at this level; default: one level below the region."},
    )


class ListQuery(AnalyticsQuery):
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=MAX_LIST_ROWS))


class TableColumnOut(StrictSchema):
    key = fields.String()
    label = fields.String()
    kind = fields.String()


class TableOut(StrictSchema):
    name = fields.String()
    columns = fields.List(fields.Nested(TableColumnOut))
    rows = fields.List(fields.Dict())
    meta = fields.Dict()


class SummaryOut(StrictSchema):
    meta = fields.Dict()
    scans = fields.Dict(keys=fields.String(), values=fields.Integer())
    codes_issued = fields.Integer()
    codes_scanned = fields.Integer()
    scan_rate = fields.Float(allow_none=True)
    open_alerts = fields.Integer()
    open_recalls = fields.Integer()
    rollup = fields.Dict()


# -- alerts -------------------------------------------------------------------------------


class AlertQuery(StrictSchema):
    status = fields.String(
        validate=validate.OneOf([s.value for s in AlertStatus] + ["all"]),
        metadata={"description": "Default: open and acknowledged."},
    )
    kind = fields.String(validate=validate.OneOf(KINDS))
    region = fields.String(validate=_PREFIX)
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))


class AlertOut(StrictSchema):
    id = fields.Integer()
    kind = fields.String()
    region_code = fields.String()
    region_name = fields.String()
    enterprise_id = fields.Integer(allow_none=True)
    batch_id = fields.Integer(allow_none=True)
    summary = fields.String()
    details = fields.Dict()
    status = fields.String()
    created_at = fields.DateTime()
    acknowledged_by = fields.Integer(allow_none=True)
    acknowledged_at = fields.DateTime(allow_none=True)
    acknowledge_note = fields.String(allow_none=True)
    closed_by = fields.Integer(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    close_note = fields.String(allow_none=True)


class AcknowledgeIn(StrictSchema):
    note = fields.String(load_default="", validate=length(2000))


class CloseIn(StrictSchema):
    note = fields.String(required=True, validate=length(2000, 1))


class RefreshOut(StrictSchema):
    new_alerts = fields.Integer()
    rollup = fields.String()


# -- recalls ------------------------------------------------------------------------------


class RecallIn(StrictSchema):
    batch_id = id_field(required=True)
    reason = fields.String(required=True, validate=length(4000, 1))
    level = fields.String(
        required=True,
        metadata={"description": "一级 (most severe), 二级 or 三级; 1, 2, 3 are accepted."},
    )
    public_notice = fields.String(
        required=True,
        validate=length(4000, 1),
        metadata={"description": "Shown to consumers who scan the batch's codes."},
    )


class RecallQuery(StrictSchema):
    status = fields.String(validate=validate.OneOf([s.value for s in RecallStatus]))
    batch_id = id_field(strict=False)


class RecallOut(StrictSchema):
    id = fields.Integer()
    batch_id = fields.Integer()
    enterprise_id = fields.Integer()
    level = fields.String()
    reason = fields.String()
    public_notice = fields.String()
    status = fields.String()
    opened_by = fields.Integer(allow_none=True)
    opened_at = fields.DateTime()
    closed_by = fields.Integer(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    close_note = fields.String(allow_none=True)


class RecallCloseIn(StrictSchema):
    note = fields.String(required=True, validate=length(4000, 1))


class RecallReportOut(StrictSchema):
    recall = fields.Nested(RecallOut)
    batch = fields.Dict()
    labels = fields.Dict()
    scans = fields.Dict()
    movements = fields.List(fields.Dict())
