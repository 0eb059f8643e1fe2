"""All mapped classes, imported here so Base.metadata is complete."""

from trace.models import analytics as analytics  # rollup tables (issue 5)
from trace.models.accounts import ApiToken, Device, Enterprise, User
from trace.models.labels import LabelRun, LabelVoid
from trace.models.oversight import Alert, AuditEntry, Recall
from trace.models.records import Attachment, Batch, Product, Site, TraceEvent
from trace.models.scans import CodeState, ScanEvent

__all__ = [
    "Alert",
    "ApiToken",
    "Attachment",
    "AuditEntry",
    "Batch",
    "CodeState",
    "Device",
    "Enterprise",
    "LabelRun",
    "LabelVoid",
    "Product",
    "Recall",
    "ScanEvent",
    "Site",
    "TraceEvent",
    "User",
]
