"""Hash chain over audit entries: any edit, deletion or reordering breaks a link.

Each entry stores ``prev_hash`` (the previous entry's hash, ``GENESIS`` for the first)
and ``hash = chain_hash(prev_hash, payload)``: SHA-256 over a domain tag, the previous
hash and the canonical JSON of the payload.

Canonical JSON: keys sorted, UTF-8 (no ``\\u`` escapes), no whitespace, NaN/Infinity
refused. Values that JSON lacks are written so that a payload rebuilt from the database
hashes the same as the one written:

* ``datetime``: aware values converted to UTC, naive values *taken as UTC* (SQLite gives
  naive, PostgreSQL aware datetimes for the same instant), always
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ``;
* ``date`` / ``time``: ISO 8601;
* ``Decimal``: plain notation without trailing zeros, as a string (``Decimal("1.50")``
  and ``Decimal("1.5")`` are the same amount; a column's scale must not break the chain);
* ``UUID``: lower-case hyphenated; ``bytes``: lower-case hex; ``Enum``: its value;
  sets: sorted lists; tuples: lists.

Note the encoding is not type-tagged: ``"2024-01-01"`` and ``date(2024, 1, 1)`` hash
alike. That is intended -- the chain proves the stored facts were not altered, it does
not type-check them.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

__all__ = ["GENESIS", "canonical_json", "chain_hash", "verify_chain"]

GENESIS = "0" * 64
_DOMAIN = b"trace-platform/audit-chain/v1\n"


def _default(value: Any) -> Any:
    # bool/int/float/str/list/dict never reach here; json handles them.
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("non-finite Decimal in audit payload")
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot serialise {type(value).__name__} in an audit payload")


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The deterministic byte encoding of ``payload`` that the chain hashes."""
    return json.dumps(
        payload if isinstance(payload, dict) else dict(payload),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_default,
    ).encode("utf-8")


def chain_hash(prev_hash: str, payload: Mapping[str, Any]) -> str:
    """SHA-256 hex of the link from ``prev_hash`` to ``payload``."""
    h = hashlib.sha256(_DOMAIN)
    h.update(prev_hash.encode("ascii"))
    h.update(b"\n")
    h.update(canonical_json(payload))
    return h.hexdigest()


def verify_chain(
    entries: Iterable[tuple[str, Mapping[str, Any], str]],
    start: str = GENESIS,
) -> int | None:
    """Index of the first broken entry, or ``None`` if the whole chain holds.

    ``entries`` are ``(prev_hash, payload, hash)`` in chain order. Entry *i* is broken if
    its ``prev_hash`` is not the previous entry's ``hash`` (``start`` for the first:
    pass the last verified hash to check a chain from the middle) or if its ``hash`` is
    not ``chain_hash(prev_hash, payload)``.
    """
    expected_prev = start
    for index, (prev_hash, payload, stored) in enumerate(entries):
        if prev_hash != expected_prev:
            return index
        try:
            actual = chain_hash(prev_hash, payload)
        except (TypeError, ValueError):
            return index
        if actual != stored:
            return index
        expected_prev = stored
    return None
