"""Who is asking, and the scope that follows from it. Every service takes an Actor."""

from __future__ import annotations

from dataclasses import dataclass

from trace.errors import Forbidden
from trace.models.enums import Role


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
        if self.enterprise_suspended:
            # Recalls stay possible (they do not ask for a writer): a safety action is never
            # blocked by an administrative one.
            raise Forbidden(
                "This enterprise is suspended by the platform: its records can be read, "
                "but nothing can be added or changed and no labels can be issued."
            )
        return self.enterprise_id

    def require_enterprise_admin(self) -> int:
        if self.role is not Role.ENTERPRISE_ADMIN or self.enterprise_id is None:
            raise Forbidden("Only the enterprise's administrator can do this.")
        return self.enterprise_id

    def require_platform_admin(self) -> None:
        if not self.is_platform_admin:
            raise Forbidden("Only a platform administrator can do this.")
