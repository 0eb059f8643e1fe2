"""Type-specific details of trace events, each validated by its own marshmallow schema.

Domain rules, not HTTP: the CLI, the demo loader and the API all pass through here.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from trace.errors import ValidationFailed
from trace.models.enums import EventType
from trace.validation import is_valid_pesticide_registration

CERTIFICATE_TYPES = ("无公害", "绿色", "有机", "地理标志", "SC", "承诺达标合格证")
#: Free text a farmer types: a name, a target pest, an issuer.
_TEXT = validate.Length(min=1, max=200)


class _Details(Schema):
    class Meta:
        unknown = RAISE


class PesticideDetails(_Details):
    product_name = fields.String(required=True, validate=_TEXT)
    registration_no = fields.String(required=True)
    active_ingredient = fields.String(required=True, validate=_TEXT)
    dose = fields.Decimal(
        required=True, as_string=True, validate=validate.Range(min=0, min_inclusive=False)
    )
    dose_unit = fields.String(required=True, validate=validate.Length(min=1, max=20))
    dilution = fields.String(required=True, validate=validate.Length(min=1, max=40))
    target = fields.String(required=True, validate=_TEXT)
    phi_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=365))
    area_mu = fields.Decimal(as_string=True, validate=validate.Range(min=0))

    @validates_schema
    def _registration(self, data: dict[str, Any], **_: Any) -> None:
        number = data.get("registration_no", "")
        if not is_valid_pesticide_registration(number):
            raise ValidationError(
                "Not a pesticide registration number (e.g. PD20080123).", "registration_no"
            )


class FertilizerDetails(_Details):
    name = fields.String(required=True, validate=_TEXT)
    amount = fields.Decimal(
        required=True, as_string=True, validate=validate.Range(min=0, min_inclusive=False)
    )
    amount_unit = fields.String(load_default="kg", validate=validate.Length(min=1, max=20))
    kind = fields.String(validate=validate.Length(max=40))  # organic, compound, foliar…
    area_mu = fields.Decimal(as_string=True, validate=validate.Range(min=0))


class InspectionItem(_Details):
    name = fields.String(required=True, validate=_TEXT)
    result = fields.String(required=True, validate=validate.Length(min=1, max=100))
    limit = fields.String(validate=validate.Length(max=100))
    passed = fields.Boolean(required=True)


class InspectionDetails(_Details):
    method = fields.String(required=True, validate=_TEXT)
    items = fields.List(
        fields.Nested(InspectionItem), required=True, validate=validate.Length(min=1)
    )
    verdict = fields.String(required=True, validate=validate.OneOf(["pass", "fail"]))
    inspector = fields.String(validate=validate.Length(max=100))
    lab = fields.String(validate=validate.Length(max=200))
    report_no = fields.String(validate=validate.Length(max=100))

    @validates_schema
    def _who(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("inspector") and not data.get("lab"):
            raise ValidationError("Give the inspector or the laboratory.", "inspector")


class CertificationDetails(_Details):
    cert_type = fields.String(required=True, validate=validate.OneOf(CERTIFICATE_TYPES))
    number = fields.String(required=True, validate=validate.Length(min=1, max=100))
    issuer = fields.String(required=True, validate=_TEXT)
    valid_from = fields.Date(required=True)
    valid_until = fields.Date(required=True)

    @validates_schema
    def _validity(self, data: dict[str, Any], **_: Any) -> None:
        start, end = data.get("valid_from"), data.get("valid_until")
        if start and end and end < start:
            raise ValidationError("Must not be before valid_from.", "valid_until")


class SowingDetails(_Details):
    variety = fields.String(validate=validate.Length(max=100))
    seed_source = fields.String(validate=validate.Length(max=200))
    area_mu = fields.Decimal(as_string=True, validate=validate.Range(min=0))


class IrrigationDetails(_Details):
    method = fields.String(validate=validate.Length(max=100))
    water_m3 = fields.Decimal(as_string=True, validate=validate.Range(min=0))


class CareDetails(_Details):
    operation = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(validate=validate.Length(max=1000))


class HarvestDetails(_Details):
    quantity = fields.Decimal(as_string=True, validate=validate.Range(min=0))
    unit = fields.String(validate=validate.Length(max=20))


class ProcessingDetails(_Details):
    process = fields.String(required=True, validate=_TEXT)  # washing, grading, waxing…
    grade = fields.String(validate=validate.Length(max=40))
    quantity = fields.Decimal(as_string=True, validate=validate.Range(min=0))
    unit = fields.String(validate=validate.Length(max=20))


class PackingDetails(_Details):
    package = fields.String(required=True, validate=_TEXT)
    units = fields.Integer(strict=True, validate=validate.Range(min=0, max=10**9))


class ShippingDetails(_Details):
    destination = fields.String(required=True, validate=_TEXT)
    destination_region = fields.String(validate=validate.Regexp(r"^[0-9]{6}\Z"))
    carrier = fields.String(validate=validate.Length(max=100))
    vehicle = fields.String(validate=validate.Length(max=40))
    quantity = fields.Decimal(as_string=True, validate=validate.Range(min=0))
    unit = fields.String(validate=validate.Length(max=20))


class ReceivingDetails(_Details):
    receiver = fields.String(required=True, validate=_TEXT)
    quantity = fields.Decimal(as_string=True, validate=validate.Range(min=0))
    unit = fields.String(validate=validate.Length(max=20))


class RetailDetails(_Details):
    store = fields.String(required=True, validate=_TEXT)


DETAIL_SCHEMAS: dict[EventType, type[Schema]] = {
    EventType.SOWING: SowingDetails,
    EventType.FERTILIZING: FertilizerDetails,
    EventType.PESTICIDE: PesticideDetails,
    EventType.IRRIGATION: IrrigationDetails,
    EventType.CARE: CareDetails,
    EventType.HARVEST: HarvestDetails,
    EventType.INSPECTION: InspectionDetails,
    EventType.CERTIFICATION: CertificationDetails,
    EventType.PROCESSING: ProcessingDetails,
    EventType.PACKING: PackingDetails,
    EventType.SHIPPING: ShippingDetails,
    EventType.RECEIVING: ReceivingDetails,
    EventType.RETAIL: RetailDetails,
}


def validate_details(event_type: EventType, details: dict[str, Any]) -> dict[str, Any]:
    """Validated details as JSON-ready values (dates and decimals as strings)."""
    schema = DETAIL_SCHEMAS[event_type]()
    try:
        loaded = schema.load(details)
    except ValidationError as exc:
        raise ValidationFailed(
            f"Invalid details for a {event_type.value} event.",
            fields=_flatten(exc.normalized_messages(), "details"),
        ) from exc
    return dict(schema.dump(loaded))


def _flatten(messages: Any, prefix: str) -> dict[str, list[str]]:
    """{'items': {0: {'name': ['x']}}} -> {'details.items.0.name': ['x']}."""
    if isinstance(messages, dict):
        out: dict[str, list[str]] = {}
        for key, value in messages.items():
            out.update(_flatten(value, f"{prefix}.{key}"))
        return out
    if isinstance(messages, list):
        return {prefix: [str(m) for m in messages]}
    return {prefix: [str(messages)]}
