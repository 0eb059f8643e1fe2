"""Label templates: which fields a run's labels print and which sections its scan page shows.

Stored as JSON on LabelRun.template so every run remembers what its producer chose to publish.
Nothing the producer did not choose is shown to the public.
"""

from __future__ import annotations

from typing import Any

from trace.errors import ValidationFailed

#: Printed on the label (in this order when chosen).
LABEL_FIELDS = (
    "product",
    "batch_no",
    "producer",
    "harvest_date",
    "origin",
    "grade",
    "code_text",
    "serial",
)
#: Sections of the public scan page and resolve API.
PUBLIC_SECTIONS = (
    "producer",
    "origin",
    "dates",
    "grade",
    "farming",
    "pesticide",
    "fertilizer",
    "inspections",
    "certificates",
    "processing",
    "shipping",
    "media",
)

DEFAULT_LABEL_FIELDS = ("product", "batch_no", "producer", "harvest_date", "code_text")
DEFAULT_TEMPLATE: dict[str, list[str]] = {
    "label": list(DEFAULT_LABEL_FIELDS),
    "public": list(PUBLIC_SECTIONS),
}


def normalise(template: dict[str, Any] | None) -> dict[str, list[str]]:
    """Validate a producer's choice; missing keys take the defaults."""
    template = dict(template or {})
    unknown_keys = set(template) - {"label", "public"}
    problems: dict[str, list[str]] = {}
    if unknown_keys:
        problems["template"] = [f"Unknown keys: {', '.join(sorted(unknown_keys))}."]
    out: dict[str, list[str]] = {}
    for key, allowed, default in (
        ("label", LABEL_FIELDS, DEFAULT_TEMPLATE["label"]),
        ("public", PUBLIC_SECTIONS, DEFAULT_TEMPLATE["public"]),
    ):
        chosen = template.get(key, default)
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            problems[f"template.{key}"] = ["A list of names."]
            continue
        bad = [c for c in chosen if c not in allowed]
        if bad:
            problems[f"template.{key}"] = [
                f"Unknown: {', '.join(bad)}. Allowed: {', '.join(allowed)}."
            ]
        out[key] = [c for c in allowed if c in chosen]  # canonical order, no duplicates
    if problems:
        raise ValidationFailed("Invalid label template.", fields=problems)
    return out


def is_public(template: dict[str, Any] | None, section: str) -> bool:
    return section in (template or DEFAULT_TEMPLATE).get("public", DEFAULT_TEMPLATE["public"])
