"""Shared schema settings: unknown input fields are an error, never silently dropped."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate

from trace.regions import lookup as regions
from trace.services.scope import MAX_ID
from trace.validation import is_storable_text

Text = fields.String


def _bad_text(value: Any, path: str) -> dict[str, list[str]]:
    if isinstance(value, str):
        if not is_storable_text(value):
            return {path: ["Contains a NUL character or an unpaired surrogate."]}
        return {}
    found: dict[str, list[str]] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and not is_storable_text(key):
                found[path or "_schema"] = ["A field name contains an unstorable character."]
                continue
            found.update(_bad_text(item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found.update(_bad_text(item, f"{path}.{index}"))
    return found


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True

    @pre_load(pass_collection=True)
    def _storable_text(self, data: Any, **_: Any) -> Any:
        # Checked once at the edge, for nested `details` too, so no text the database
        # cannot store reaches a service (it would surface as a 500 on PostgreSQL).
        bad = _bad_text(data, "")
        if bad:
            raise ValidationError(bad)
        return data


def region_code_field(**kwargs: Any) -> fields.String:
    def _known(value: str) -> None:
        if not regions.is_valid_code(value):
            raise ValidationError(f"{value} is not a known 6-digit region code.")

    return fields.String(validate=[validate.Regexp(r"^[0-9]{6}\Z"), _known], **kwargs)


def id_field(*, strict: bool = True, **kwargs: Any) -> fields.Integer:
    """A reference to a row. Strict in JSON bodies (1.5 or "7" is a wrong type, not 1 or 7);
    query strings and form fields are text, so there `strict=False`."""
    return fields.Integer(strict=strict, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


#: Times a production record can plausibly carry; outside this, conversions to UTC overflow.
EARLIEST, LATEST = 1900, 2199


def plausible_time(value: datetime) -> None:
    try:
        year = value.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not EARLIEST <= year <= LATEST:
        raise ValidationError(f"Must be between the years {EARLIEST} and {LATEST}.")


def length(max_len: int, min_len: int = 0) -> validate.Length:
    return validate.Length(min=min_len, max=max_len)
