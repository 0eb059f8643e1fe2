"""Audit hash chain: canonical JSON and detection of every kind of tampering."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import pytest

from trace.crypto.chain import GENESIS, canonical_json, chain_hash, verify_chain

Entry = tuple[str, dict[str, Any], str]


def _build(payloads: list[dict[str, Any]], start: str = GENESIS) -> list[Entry]:
    entries: list[Entry] = []
    prev = start
    for payload in payloads:
        h = chain_hash(prev, payload)
        entries.append((prev, payload, h))
        prev = h
    return entries


def _payloads(n: int) -> list[dict[str, Any]]:
    base = dt.datetime(2024, 5, 1, 8, 30, tzinfo=dt.UTC)
    return [
        {
            "action": "batch.recall" if i % 7 == 0 else "event.create",
            "actor_id": i % 5,
            "at": base + dt.timedelta(minutes=i),
            "amount": Decimal(i) / 4,
            "note": f"第{i}条 农药使用记录",
            "id": uuid.UUID(int=i),
        }
        for i in range(n)
    ]


def test_genesis_and_hash_shape() -> None:
    assert GENESIS == "0" * 64
    h = chain_hash(GENESIS, {"a": 1})
    assert len(h) == 64 and int(h, 16) >= 0
    assert h != chain_hash(GENESIS, {"a": 2})
    assert h != chain_hash("1" * 64, {"a": 1})


def test_intact_chain_verifies() -> None:
    entries = _build(_payloads(50))
    assert verify_chain(entries) is None
    assert verify_chain([]) is None
    assert verify_chain(iter(entries)) is None  # any iterable, e.g. a streamed query


def test_tampered_payload_is_located() -> None:
    entries = _build(_payloads(50))
    prev, payload, h = entries[17]
    forged = dict(payload, note=payload["note"] + "（已修改）")
    entries[17] = (prev, forged, h)
    assert verify_chain(entries) == 17


def test_tampered_decimal_and_time_are_detected() -> None:
    entries = _build(_payloads(10))
    prev, payload, h = entries[3]
    entries[3] = (prev, dict(payload, amount=payload["amount"] + Decimal("0.01")), h)
    assert verify_chain(entries) == 3
    entries = _build(_payloads(10))
    prev, payload, h = entries[4]
    entries[4] = (prev, dict(payload, at=payload["at"] + dt.timedelta(microseconds=1)), h)
    assert verify_chain(entries) == 4


def test_recomputed_hash_breaks_the_next_link() -> None:
    # An attacker who edits a payload and recomputes its hash breaks the following entry.
    entries = _build(_payloads(20))
    prev, payload, _ = entries[5]
    forged = dict(payload, actor_id=999)
    entries[5] = (prev, forged, chain_hash(prev, forged))
    assert verify_chain(entries) == 6


def test_deleted_reordered_and_inserted_entries_are_detected() -> None:
    entries = _build(_payloads(20))
    assert verify_chain(entries[:8] + entries[9:]) == 8
    swapped = list(entries)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert verify_chain(swapped) == 3
    intruder = (entries[9][2], {"action": "x"}, chain_hash(entries[9][2], {"action": "x"}))
    assert verify_chain([*entries[:10], intruder, *entries[10:]]) == 11
    assert verify_chain(entries[1:]) == 0  # first entry must hang off GENESIS ...
    assert verify_chain(entries[1:], start=entries[0][2]) is None  # ... or a given start


def test_unserialisable_payload_counts_as_broken() -> None:
    entries = _build(_payloads(3))
    prev, _, h = entries[1]
    entries[1] = (prev, {"x": object()}, h)
    assert verify_chain(entries) == 1
    entries[1] = ("\u00e9" * 64, {"x": 1}, h)
    assert verify_chain(entries) == 1


# -- canonical JSON ------------------------------------------------------------------------


def test_key_order_and_mapping_type_do_not_matter() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": True}
    b = {"c": True, "a": {"x": None, "y": (1, 2)}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == b'{"a":{"x":null,"y":[1,2]},"b":1,"c":true}'


def test_utf8_without_escapes() -> None:
    assert canonical_json({"name": "普洱茶"}) == '{"name":"普洱茶"}'.encode()


def test_datetimes_normalised_to_utc() -> None:
    aware_utc = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
    aware_cst = dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    naive = dt.datetime(2024, 1, 1, 0, 0)  # as SQLite returns it
    encoded = {canonical_json({"t": t}) for t in (aware_utc, aware_cst, naive)}
    assert encoded == {b'{"t":"2024-01-01T00:00:00.000000Z"}'}
    assert canonical_json({"t": naive.replace(microsecond=5)}) != encoded.pop()


def test_other_types_are_deterministic() -> None:
    class Kind(enum.Enum):
        RECALL = "recall"

    payload = {
        "d": dt.date(2024, 3, 9),
        "tm": dt.time(7, 5, 1),
        "dec": Decimal("12.50"),
        "big": Decimal("1E+3"),
        "zero": Decimal("0.000"),
        "neg0": Decimal("-0.0"),
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "raw": b"\x00\xff",
        "kind": Kind.RECALL,
        "tags": {"b", "a"},
    }
    assert canonical_json(payload) == (
        b'{"big":"1000","d":"2024-03-09","dec":"12.5","kind":"recall","neg0":"0",'
        b'"raw":"00ff","tags":["a","b"],"tm":"07:05:01",'
        b'"u":"12345678-1234-5678-1234-567812345678","zero":"0"}'
    )
    # A column's scale must not break the chain: 1.5 and 1.50 are one amount.
    assert chain_hash(GENESIS, {"x": Decimal("1.5")}) == chain_hash(GENESIS, {"x": Decimal("1.50")})
    assert chain_hash(GENESIS, {"x": Decimal("1.5")}) != chain_hash(GENESIS, {"x": Decimal("1.51")})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), Decimal("NaN"), Decimal("Infinity")])
def test_non_finite_numbers_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


def test_unknown_type_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
