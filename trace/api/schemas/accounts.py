from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from trace.api.schemas.base import StrictSchema, id_field, length, region_code_field
from trace.models.enums import EnterpriseStatus, Role
from trace.validation import is_valid_uscc


class EnterprisePatch(StrictSchema):
    name = fields.String(required=True, validate=length(200, 1))
    region_code = region_code_field(required=True)
    address = fields.String(validate=length(300))
    contact_name = fields.String(validate=length(100))
    contact_phone = fields.String(validate=length(40))
    wechat_account = fields.String(validate=length(100))
    status = fields.String(validate=validate.OneOf([s.value for s in EnterpriseStatus]))


class EnterpriseIn(EnterprisePatch):
    uscc = fields.String(required=True, metadata={"description": "统一社会信用代码 (18 chars)"})

    @validates("uscc")
    def _uscc(self, value: str, **_: object) -> None:
        if not is_valid_uscc(value):
            raise ValidationError("Not a valid unified social credit code (check character).")


class EnterpriseOut(StrictSchema):
    id = fields.Integer()
    uscc = fields.String()
    name = fields.String()
    region_code = fields.String()
    address = fields.String()
    contact_name = fields.String()
    contact_phone = fields.String()
    wechat_account = fields.String()
    status = fields.String()
    created_at = fields.DateTime()


class UserIn(StrictSchema):
    username = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9_.-]{3,80}\Z"))
    password = fields.String(required=True, load_only=True, validate=length(200, 8))
    display_name = fields.String(validate=length(120))
    role = fields.String(required=True, validate=validate.OneOf([r.value for r in Role]))
    enterprise_id = id_field(allow_none=True)
    region_prefix = fields.String(
        allow_none=True, validate=validate.Regexp(r"^[0-9]{2}([0-9]{2}){0,2}\Z")
    )


class UserOut(StrictSchema):
    id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    role = fields.String()
    enterprise_id = fields.Integer(allow_none=True)
    region_prefix = fields.String(allow_none=True)
    created_at = fields.DateTime()


class LoginIn(StrictSchema):
    username = fields.String(required=True)
    password = fields.String(required=True, load_only=True)
    token_name = fields.String(load_default="login", validate=length(100))


class TokenIn(StrictSchema):
    name = fields.String(load_default="", validate=length(100))


class TokenOut(StrictSchema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class IssuedTokenOut(TokenOut):
    token = fields.String(metadata={"description": "Shown once; only its hash is stored."})
