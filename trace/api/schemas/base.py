"""Shared schema settings: unknown input fields are an error, never silently dropped."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from trace.regions import lookup as regions

Text = fields.String


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


def region_code_field(**kwargs: Any) -> fields.String:
    def _known(value: str) -> None:
        if not regions.is_valid_code(value):
            raise ValidationError(f"{value} is not a known 6-digit region code.")

    return fields.String(validate=[validate.Regexp(r"^\d{6}$"), _known], **kwargs)


def length(max_len: int, min_len: int = 0) -> validate.Length:
    return validate.Length(min=min_len, max=max_len)
