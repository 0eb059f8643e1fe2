"""Closed vocabularies stored as short strings (portable across SQLite and PostgreSQL)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ENTERPRISE_ADMIN = "enterprise_admin"
    ENTERPRISE_OPERATOR = "enterprise_operator"
    REGULATOR = "regulator"


class EnterpriseStatus(StrEnum):
    ADMITTED = "admitted"
    SUSPENDED = "suspended"


class BatchStatus(StrEnum):
    OPEN = "open"
    SEALED = "sealed"
    HELD = "held"
    RECALLED = "recalled"


class EventType(StrEnum):
    SOWING = "sowing"
    FERTILIZING = "fertilizing"
    PESTICIDE = "pesticide"
    IRRIGATION = "irrigation"
    CARE = "care"
    HARVEST = "harvest"
    INSPECTION = "inspection"
    CERTIFICATION = "certification"
    PROCESSING = "processing"
    PACKING = "packing"
    SHIPPING = "shipping"
    RECEIVING = "receiving"
    RETAIL = "retail"


class LabelLevel(StrEnum):
    ITEM = "item"
    BATCH = "batch"


class RunStatus(StrEnum):
    ISSUING = "issuing"
    ISSUED = "issued"
    FAILED = "failed"


class ScanChannel(StrEnum):
    PHONE = "phone"
    KIOSK = "kiosk"
    API = "api"
    PRINTER_CHECK = "printer_check"


class Verdict(StrEnum):
    GENUINE = "genuine"
    COUNTERFEIT = "counterfeit"
    VOIDED = "voided"
    RECALLED = "recalled"
    SUSPICIOUS = "suspicious"


class DeviceKind(StrEnum):
    KIOSK = "kiosk"
    PRINTER_STATION = "printer_station"


class RecallStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
