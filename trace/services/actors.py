"""Who is asking, and the scope that follows from it. Every service takes an Actor."""

from __future__ import annotations

from dataclasses import dataclass

from trace.errors import Forbidden
from trace.models.enums import Role

#: What a suspended enterprise's accounts are told when they try to change something.
SUSPENDED = (
    "This enterprise is suspended by the platform: its records can be read, but nothing "
    "can be added or changed and no labels can be issued. Recalls stay possible, and its "
    "administrator can still switch a device off or replace a device's token."
)


@dataclass(frozen=True)
class Actor:
    user_id: int | None
    role: Role
    enterprise_id: int | None = None
    region_prefix: str | None = None
    #: The actor's enterprise is suspended by the platform: it reads, but writes nothing.
    enterprise_suspended: bool = False

    @property
    def is_enterprise(self) -> bool:
        return self.role in (Role.ENTERPRISE_ADMIN, Role.ENTERPRISE_OPERATOR)

    @property
    def is_regulator(self) -> bool:
        return self.role is Role.REGULATOR

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    def require_writer(self) -> int:
        """The enterprise this actor writes for; regulators and admins write no records."""
        if not self.is_enterprise or self.enterprise_id is None:
            raise Forbidden("Only an enterprise account can change production records.")
        self.require_not_suspended()
        return self.enterprise_id

    def require_not_suspended(self) -> None:
        """Suspension makes an enterprise's accounts read-only. Safety actions do not call
        this: recalls (they ask for no writer), switching a device off and replacing a
        leaked device token -- an administrative measure never blocks one."""
        if self.enterprise_suspended:
            raise Forbidden(SUSPENDED)

    def require_enterprise_admin(self) -> int:
        """The enterprise of its administrator, who (like every account of a suspended
        enterprise) changes nothing while it is suspended."""
        if self.role is not Role.ENTERPRISE_ADMIN or self.enterprise_id is None:
            raise Forbidden("Only the enterprise's administrator can do this.")
        self.require_not_suspended()
        return self.enterprise_id

    def require_platform_admin(self) -> None:
        if not self.is_platform_admin:
            raise Forbidden("Only a platform administrator can do this.")
